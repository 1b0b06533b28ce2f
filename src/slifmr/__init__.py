"""slifmr: SLIF-MR and its baselines on PyTorch Lightning + Hydra."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["load_run"]


def __getattr__(name: str):
    # lazy: `import slifmr` stays light (no torch import) for the CLIs that do not need it
    if name == "load_run":
        from slifmr.inference import load_run

        return load_run
    raise AttributeError(f"module 'slifmr' has no attribute {name!r}")

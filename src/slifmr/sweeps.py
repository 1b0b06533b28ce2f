"""The paper's studies as Hydra multirun configs (``sweeps/``, config group ``sweep``).

``python -m slifmr.sweeps`` lists every study with its grid and job count, without composing or
training anything; ``python -m slifmr.train -m +sweep=<name> dry_run=true`` lists the jobs
themselves (each job prints :func:`describe_job` and returns before any data is read).

The group lives in ``sweeps/`` at the repository root and reaches the installed config package
as ``conf/sweep`` (a link to ``../sweeps``): a sub-package mapped with ``package-dir`` would be
invisible to Hydra under an editable install, which looks for ``sweep/`` inside ``conf/``.
"""

from __future__ import annotations

import argparse
import math
from importlib import resources

from omegaconf import DictConfig, OmegaConf

__all__ = ["sweep_names", "grid", "job_count", "describe_job"]


def _sweep_dir():
    return resources.files("slifmr.conf").joinpath("sweep")


def sweep_names() -> list[str]:
    """Every study config in the ``sweep`` group, sorted."""
    return sorted(p.name[: -len(".yaml")] for p in _sweep_dir().iterdir() if p.name.endswith(".yaml"))


def grid(name: str) -> dict[str, list[str]]:
    """The swept values of a study, key -> values as override strings (``hydra.sweeper.params``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = OmegaConf.create(_sweep_dir().joinpath(f"{name}.yaml").read_text(encoding="utf-8"))
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    parser = OverridesParser.create()
    out: dict[str, list[str]] = {}
    for key, value in params.items():
        override = parser.parse_override(f"{key}={value}")
        out[str(key)] = list(override.sweep_string_iterator()) if override.is_sweep_override() else [str(value)]
    return out


def job_count(name: str) -> int:
    """Number of jobs of a study: the product of its grid sizes (Hydra's basic sweeper)."""
    return math.prod(len(v) for v in grid(name).values())


def describe_job(cfg: DictConfig) -> str:
    """One line per job for a dry run: its number, overrides, key settings and output dir.

    Reads only the composed config (no data, no model), so listing a 60-job study takes seconds.
    """
    from hydra.core.hydra_config import HydraConfig

    num, overrides, out = "-", [], "?"
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        num = hc.job.get("num", "-")
        overrides = list(hc.overrides.task)
        out = hc.runtime.output_dir
    settings = {
        "sweep": cfg.get("sweep_name"), "dataset": cfg.dataset.get("name"),
        "model": str(cfg.model.get("_target_", "?")).rsplit(".", 1)[-1], "seed": cfg.get("seed"),
    }
    keys = " ".join(f"{k}={v}" for k, v in settings.items())
    return f"[dry-run] job {num}: {' '.join(overrides)} | {keys} | {out}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m slifmr.sweeps", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="studies to show (default: all)")
    args = parser.parse_args(argv)
    total = 0
    for name in args.names or sweep_names():
        g, n = grid(name), job_count(name)
        total += n
        print(f"{name:<18} {n:>4} jobs  " + "  x  ".join(f"{k}={','.join(v)}" for k, v in g.items()))
    print(f"{'total':<18} {total:>4} jobs  (run one: python -m slifmr.train -m +sweep=<name>)")


if __name__ == "__main__":
    main()

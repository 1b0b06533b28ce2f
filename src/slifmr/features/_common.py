"""Pieces both encoders share: the result type, device choice, model-load errors, batching."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from slifmr.errors import DataError


class FeatureModelError(DataError):
    """A feature model could not be loaded (missing extra, wrong name, or no network)."""


@dataclass
class EncodedFeature:
    """One modality: ``matrix`` (n_items, d) float32, ``mask`` (n_items,) bool, and why rows are missing."""

    matrix: np.ndarray
    mask: np.ndarray
    missing: dict[str, int] = field(default_factory=dict)  # reason -> count
    model: str = ""
    settings: dict = field(default_factory=dict)  # what the encoder actually used (for the manifest)

    def __post_init__(self) -> None:
        if self.matrix.shape[0] != self.mask.shape[0]:
            raise ValueError(f"matrix has {self.matrix.shape[0]} rows but mask has {self.mask.shape[0]}")
        self.matrix[~self.mask] = 0.0  # a missing row is zero *and* flagged, never only zero


def resolve_device(device: str | None) -> str:
    """'auto' (or None) -> 'cuda' when available, else 'cpu'; anything else as given."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def require(module: str, what: str):
    """Import an optional dependency or explain which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise FeatureModelError(
            f"{what} needs the '{module}' package: pip install -e \".[features]\" (or pip install {module})"
        ) from exc


def load_error(kind: str, name: str, exc: BaseException) -> FeatureModelError:
    """A clear message naming the model that was looked for, and the offline hint."""
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    hint = (
        "HF_HUB_OFFLINE is set, so only local paths and the local Hugging Face cache are used"
        if offline
        else "this machine may be offline (set HF_HUB_OFFLINE=1 and use a local path or a pre-filled cache)"
    )
    return FeatureModelError(
        f"could not load {kind} model '{name}': {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
        f"-- give a local directory saved with save_pretrained, or a Hub name reachable from here; {hint}"
    )


def batches(n: int, size: int) -> Iterator[slice]:
    if size < 1:
        raise DataError(f"batch size must be >= 1, got {size}")
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def progress(total: int, desc: str, enabled: bool):
    """A tqdm bar (tqdm ships with Lightning); a no-op object when disabled."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="item", disable=not enabled, leave=False)


def assemble(n: int, present: Sequence[int], rows: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Scatter encoded rows of the present items into an (n, dim) matrix plus its mask."""
    matrix = np.zeros((n, dim), dtype=np.float32)
    mask = np.zeros(n, dtype=bool)
    if len(present):
        idx = np.asarray(present, dtype=np.int64)
        matrix[idx] = rows
        mask[idx] = True
    return matrix, mask


def hub_offline(timeout: float = 3.0) -> bool:
    """True when HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set or the Hub cannot be reached:
    then only local folders and the local cache are used (no minute of hub retries)."""
    if any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
           for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://", 1)[-1].split("/", 1)[0]
    try:
        with socket.create_connection((host.split(":")[0], 443), timeout=timeout):
            return False
    except OSError:
        return True

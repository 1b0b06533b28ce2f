"""Reading and writing checkpoints safely: no file is ever unpickled, a write is never half done,
and a checkpoint knows which data (dataset files + split settings) it was trained on.

* :func:`read_checkpoint` loads with ``torch.load(weights_only=True)``: only tensors and plain
  containers are rebuilt, so a crafted file cannot run code; an empty, garbage or foreign file is
  a :class:`CheckpointError` naming it.
* :class:`AtomicCheckpointIO` writes every checkpoint (``best.ckpt``, ``last.ckpt``) to a temporary
  name in the same directory, fsyncs and renames: a kill mid-write leaves the previous file intact.
* :func:`check_data` compares the data fingerprint stored in a checkpoint with the dataset at
  hand and refuses a mismatch (a checkpoint tested on another split sees its training items as
  test items).
"""

from __future__ import annotations

import io
import logging
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from slifmr.errors import DataError

log = logging.getLogger(__name__)

DATA_KEY = "RecDataModule"  # Lightning stores RecDataModule.state_dict() (the data fingerprint) under it
CLASS_KEY = "slifmr_model_class"  # the model class (RecModel.on_save_checkpoint)


class CheckpointError(DataError):
    """A checkpoint that cannot be used: missing, unreadable, unsafe, foreign or for other data."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path`` as a dict, loaded without unpickling anything but tensors and
    plain containers; a :class:`CheckpointError` naming the file for anything else."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError("checkpoint not found", p)
    if not p.is_file():
        raise CheckpointError("checkpoint path is not a file", p)
    if p.stat().st_size == 0:
        raise CheckpointError("checkpoint file is empty", p)
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if found:  # weights_only refused to import something: maybe code, never run
            raise CheckpointError(
                f"refused to load: the file asks to import {found.group(1)}, which is neither a tensor nor a plain "
                "container (loading it could run code; slifmr only loads weights)", p) from exc
        reason = next((ln.strip() for ln in str(exc).splitlines() if "Unsupported" in ln), type(exc).__name__)
        raise CheckpointError(f"not a readable checkpoint (corrupt or not written by torch.save: {reason})", p) from exc
    except (EOFError, RuntimeError, OSError, ValueError, zipfile.BadZipFile, KeyError, IndexError) as exc:
        raise CheckpointError(f"not a readable checkpoint (truncated or not written by torch.save?): "
                              f"{type(exc).__name__}: {str(exc).strip()[:200]}", p) from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or not isinstance(ckpt["state_dict"], dict):
        what = sorted(map(str, ckpt))[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"not a Lightning checkpoint (no 'state_dict'; it holds {what})", p)
    if CLASS_KEY not in ckpt and "_target_" not in (ckpt.get("hyper_parameters") or {}):
        raise CheckpointError("not a slifmr checkpoint: it names no slifmr model class "
                              f"('{CLASS_KEY}' missing)", p)
    return ckpt


def describe(fp: dict[str, Any] | None) -> str:
    """One line for a data fingerprint, for messages."""
    if not fp:
        return "unknown data"
    split = ", ".join(f"{k}={fp[k]}" for k in ("split", "split_seed", "ratios", "kcore") if k in fp)
    noise = fp.get("noise") or {}
    noisy = {k: v for k, v in noise.items() if k != "seed" and v}
    extra = f", noise={noise}" if noisy else ""
    return f"dataset '{fp.get('dataset')}' at {fp.get('path')} ({split}{extra}; data key {fp.get('key')})"


def stored_fingerprint(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """The data fingerprint a checkpoint was saved with (None for checkpoints without one)."""
    state = ckpt.get(DATA_KEY)
    return state.get("fingerprint") if isinstance(state, dict) else None


def check_data(stored: dict[str, Any] | None, path: str | Path, fingerprint: dict[str, Any] | None) -> None:
    """Refuse a checkpoint (at ``path``) trained on other data or another split than
    ``fingerprint``; warn when it stores no fingerprint (written before slifmr stored one)."""
    if fingerprint is None:
        return
    if stored is None:
        log.warning("checkpoint %s stores no data fingerprint: cannot check that it was trained on %s",
                    path, describe(fingerprint))
        return
    keys = ("key", "noise")
    if any(stored.get(k) != fingerprint.get(k) for k in keys):
        raise CheckpointError(
            f"the checkpoint was trained on {describe(stored)}, but this run has {describe(fingerprint)}: "
            "testing or resuming on other data or another split would score items it trained on; "
            "use the dataset and split settings it was trained with", path)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to memory, then a same-directory temporary file, fsync and rename: a
    checkpoint is either the previous complete file or the new complete file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        from slifmr.records import atomic_write_bytes

        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        atomic_write_bytes(Path(path), buf.getvalue())

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        return read_checkpoint(path)  # weights only, whatever the caller asked

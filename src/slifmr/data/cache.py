"""Content-addressed cache of prepared datasets, written atomically, healing itself.

The key hashes the bytes of every file the reader reads and the preparation settings, so
editing a file or a setting can never serve a stale split. An entry that cannot be read
(truncated, not a zip) is reported and rebuilt; temporary files left by killed writes are swept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from slifmr.data.dataset import RecDataset
from slifmr.errors import DataError

log = logging.getLogger(__name__)

STARTED = time.time()  # this process's start (about): temporary files older than it are stale
STALE_GRACE_S = 60.0  # ... by this margin, so a write another job began just before is left alone


class CorruptCacheEntry(DataError):
    """A cache file that exists but cannot be read back."""


def file_digest(path: Path, h: "hashlib._Hash") -> None:
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise DataError(f"cannot read dataset file ({exc.strerror or exc})", path) from exc


def cache_key(inputs: list[Path], settings: dict) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for p in sorted(inputs):
        h.update(p.name.encode())
        file_digest(p, h)
    return h.hexdigest()


def sweep_stale(cache_dir: Path, before: float | None = None) -> list[Path]:
    """Remove ``*.tmp`` files in ``cache_dir`` last written before ``before`` (default: this
    process's start minus a grace margin): leftovers of killed writes. Returns what was removed."""
    before = STARTED - STALE_GRACE_S if before is None else before
    removed = []
    for p in Path(cache_dir).glob("*.tmp"):
        try:
            if p.is_file() and p.stat().st_mtime < before:
                p.unlink()
                removed.append(p)
        except OSError:  # another process removed or renamed it meanwhile
            continue
    if removed:
        log.warning("removed %d stale temporary file(s) of killed cache writes in %s", len(removed), cache_dir)
    return removed


def save(ds: RecDataset, target: Path) -> None:
    """Write to a temporary name in the same directory, then rename: never half-written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {
        "meta": np.array(json.dumps({
            "name": ds.name, "n_users": ds.n_users, "n_items": ds.n_items,
            "n_entities": ds.n_entities, "n_relations": ds.n_relations,
            "relation_names": list(ds.relation_names), "features": list(ds.features),
        })),
        "train": ds.train, "valid": ds.valid, "test": ds.test,
        "user_ids": ds.user_ids.astype(str), "item_ids": ds.item_ids.astype(str),
    }
    if ds.kg is not None:
        arrays["kg"] = ds.kg
    for k in ds.features:
        arrays[f"feat__{k}"] = ds.features[k]
        arrays[f"mask__{k}"] = ds.feature_masks[k]
    atomic_savez(target, arrays)


def atomic_savez(target: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` to a temporary name in ``target``'s directory, then rename: a reader sees the
    whole file or none (a killed write leaves a ``*.tmp`` that :func:`sweep_stale` removes)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> RecDataset:
    """A cached dataset; :class:`CorruptCacheEntry` when the file cannot be read back."""
    try:
        return _load(path)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise CorruptCacheEntry(f"corrupt dataset cache entry ({type(exc).__name__}: {exc})", path) from exc


def _load(path: Path) -> RecDataset:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        return RecDataset(
            name=meta["name"], n_users=meta["n_users"], n_items=meta["n_items"],
            train=z["train"], valid=z["valid"], test=z["test"],
            user_ids=z["user_ids"], item_ids=z["item_ids"],
            kg=z["kg"] if "kg" in z else None,
            n_entities=meta["n_entities"], n_relations=meta["n_relations"],
            relation_names=meta["relation_names"],
            features={k: z[f"feat__{k}"] for k in meta["features"]},
            feature_masks={k: z[f"mask__{k}"] for k in meta["features"]},
        )

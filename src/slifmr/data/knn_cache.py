"""Feature kNN lists cached on disk, so a study's runs pay the search once per feature matrix.

The search (:func:`slifmr.graphs.knn.knn_graph`) over 4096-d + 768-d features of 24,915 items costs
about a minute of CPU per run; its lists depend only on the feature matrix, its mask, k and the
device type that searched (float sums differ between devices, so a run's lists do not depend on
whether another device filled the cache). The file name holds a content hash of the features and
mask (so a changed file, noise setting or split selection of features gives another entry) and k;
the file repeats them and is checked on reading. Written as ``.npz`` to a temporary name, then
renamed; read with ``allow_pickle=False``. An entry that cannot be read or does not match is
reported and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from slifmr.data.cache import CorruptCacheEntry, atomic_savez

log = logging.getLogger(__name__)

VERSION = 1  # bump when knn_graph's output for the same inputs changes


def feature_digest(features: Tensor, mask: Tensor) -> str:
    """Hex content hash of a feature matrix (dtype, shape, bytes) and its row mask."""
    h = hashlib.blake2b(digest_size=16)
    for t in (features, mask):
        a = np.ascontiguousarray(t.detach().cpu().numpy())
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def entry_path(cache_dir: Path, modality: str, digest: str, k: int, device_type: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in modality)
    return Path(cache_dir) / f"knn-{safe}-{digest}-k{k}-{device_type}.npz"


def _meta(digest: str, k: int, n_items: int, device_type: str) -> dict:
    return {"version": VERSION, "digest": digest, "k": int(k), "n_items": int(n_items), "device": device_type}


def load(path: Path, digest: str, k: int, n_items: int, device_type: str) -> tuple[Tensor, Tensor, Tensor]:
    """(rows, cols, cosines) of a cached entry; :class:`CorruptCacheEntry` naming the file and what
    is wrong when it cannot be read, was written for other features / k, or its lists are invalid."""
    want = _meta(digest, k, n_items, device_type)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            rows, cols, vals = z["rows"], z["cols"], z["vals"]
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise CorruptCacheEntry(f"unreadable kNN cache entry ({type(exc).__name__}: {exc})", path) from exc
    if meta != want:
        raise CorruptCacheEntry(f"kNN cache entry written for {meta}, expected {want}", path)
    n = len(rows)
    if not (rows.ndim == cols.ndim == vals.ndim == 1 and len(cols) == len(vals) == n and n <= n_items * k):
        raise CorruptCacheEntry(f"kNN cache entry: rows/cols/vals of lengths {len(rows)}/{len(cols)}/{len(vals)}, "
                                f"expected equal and <= {n_items * k}", path)
    if n and (rows.min() < 0 or cols.min() < 0 or rows.max() >= n_items or cols.max() >= n_items
              or (np.diff(rows) < 0).any()):
        raise CorruptCacheEntry(f"kNN cache entry: item ids outside [0, {n_items}) or rows not sorted", path)
    return torch.from_numpy(rows), torch.from_numpy(cols), torch.from_numpy(vals)


def save(path: Path, lists: tuple[Tensor, Tensor, Tensor], digest: str, k: int, n_items: int,
         device_type: str) -> None:
    rows, cols, vals = (t.detach().cpu().numpy() for t in lists)
    atomic_savez(path, {"meta": np.array(json.dumps(_meta(digest, k, n_items, device_type))),
                        "rows": rows, "cols": cols, "vals": vals})


def cached_search(cache_dir: Path | None, modality: str, features: Tensor, mask: Tensor, k: int,
                  device: torch.device, search) -> tuple[Tensor, Tensor, Tensor]:
    """``search()``'s (rows, cols, cosines) on ``device``, read from / written to ``cache_dir`` when
    one is given. ``features``/``mask`` (I, d) / (I,) are what the search reads, hashed where they
    lie (the store's host copy: no device round trip)."""
    if cache_dir is None:
        return search()
    device = torch.device(device)
    digest = feature_digest(features, mask)
    path = entry_path(cache_dir, modality, digest, k, device.type)
    if path.exists():
        try:
            return tuple(t.to(device) for t in load(path, digest, k, features.shape[0], device.type))
        except CorruptCacheEntry as exc:
            log.warning("%s; rebuilding it", exc)
            path.unlink(missing_ok=True)
    lists = search()
    try:
        save(path, lists, digest, k, features.shape[0], device.type)
    except OSError as exc:  # a read-only cache must not stop a run: it only costs the search again
        log.warning("could not write the kNN cache entry %s (%s)", path, exc)
    return lists

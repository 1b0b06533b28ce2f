"""Iterative k-core filtering and id compaction."""

from __future__ import annotations

import numpy as np


def kcore_mask(users: np.ndarray, items: np.ndarray, min_user: int, min_item: int) -> np.ndarray:
    """Boolean mask of interactions that survive iterative k-core filtering.

    Removing a sparse user can push an item below its threshold and vice versa, so the
    filter repeats until a fixed point. ``0`` (or 1) for a side disables that side.
    """
    keep = np.ones(len(users), dtype=bool)
    if min_user <= 1 and min_item <= 1:
        return keep
    n_u = int(users.max()) + 1 if len(users) else 0
    n_i = int(items.max()) + 1 if len(items) else 0
    while True:
        u_deg = np.bincount(users[keep], minlength=n_u)
        i_deg = np.bincount(items[keep], minlength=n_i)
        bad = keep & ((u_deg[users] < min_user) | (i_deg[items] < min_item))
        if not bad.any():
            return keep
        keep &= ~bad


def compact(ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Map the ids that occur to ``0..k-1`` preserving order; returns (new ids, kept old ids)."""
    present = np.zeros(n, dtype=bool)
    present[ids] = True
    old = np.flatnonzero(present)
    remap = np.full(n, -1, dtype=np.int64)
    remap[old] = np.arange(len(old))
    return remap[ids], old

"""Per-user train/valid/test splits and the leakage check.

All splits are vectorised: a random key per interaction, a stable sort by (user, key), and the
rank of each interaction inside its user decides its split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from slifmr.data.dataset import TEST, TRAIN, VALID
from slifmr.errors import DataError


def _rank_within_user(users: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random rank of each interaction among its user's interactions, and the user's count."""
    keys = rng.random(len(users))
    order = np.lexsort((keys, users))
    counts = np.bincount(users)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(len(users), dtype=np.int64)
    rank[order] = np.arange(len(users)) - np.repeat(starts, counts)
    return rank, counts[users]


def random_split(users: np.ndarray, ratios: Sequence[float], seed: int) -> np.ndarray:
    """Seeded per-user split; returns TRAIN/VALID/TEST labels.

    A user with n interactions gets ``round(n * r_test)`` test and ``round(n * r_valid)`` valid
    items, but at least one of each when n >= 3 and never all of them (one train item stays).
    """
    if len(ratios) != 3 or abs(sum(ratios) - 1.0) > 1e-6 or min(ratios) < 0:
        raise DataError(f"split ratios must be three non-negative numbers summing to 1, got {list(ratios)}")
    rng = np.random.default_rng(seed)
    rank, n = _rank_within_user(users, rng)
    n_test = np.rint(n * ratios[2]).astype(np.int64)
    n_valid = np.rint(n * ratios[1]).astype(np.int64)
    if ratios[2] > 0:
        n_test = np.where(n >= 3, np.maximum(n_test, 1), n_test)
    if ratios[1] > 0:
        n_valid = np.where(n >= 3, np.maximum(n_valid, 1), n_valid)
    n_test = np.minimum(n_test, n - 1)
    n_valid = np.minimum(n_valid, n - 1 - n_test)
    labels = np.full(len(users), TRAIN, dtype=np.int8)
    labels[rank < n_test] = TEST
    labels[(rank >= n_test) & (rank < n_test + n_valid)] = VALID
    return labels


def temporal_split(users: np.ndarray, times: np.ndarray, ratios: Sequence[float]) -> np.ndarray:
    """Per user, the latest interactions are test, the ones before valid (leave-last-out style).

    Counts per user follow ``random_split`` (at least one test and one valid item for users
    with >= 3 interactions, one train item always kept); ties keep file order.
    """
    labels = random_split(users, ratios, seed=0)  # only its per-user counts are used
    n_test = np.bincount(users[labels == TEST], minlength=int(users.max()) + 1)
    n_valid = np.bincount(users[labels == VALID], minlength=int(users.max()) + 1)
    order = np.lexsort((np.arange(len(users)), -times, users))  # per user, newest first
    counts = np.bincount(users)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(len(users), dtype=np.int64)
    rank[order] = np.arange(len(users)) - np.repeat(starts, counts)
    out = np.full(len(users), TRAIN, dtype=np.int8)
    out[rank < n_test[users]] = TEST
    out[(rank >= n_test[users]) & (rank < n_test[users] + n_valid[users])] = VALID
    return out


def carve_valid(users: np.ndarray, labels: np.ndarray, valid_ratio: float, seed: int) -> np.ndarray:
    """Keep the given test split; move ``valid_ratio`` of each user's train items to VALID.

    A user keeps at least one train item; users with one train item get no valid item.
    """
    labels = labels.copy()
    is_train = labels == TRAIN
    idx = np.flatnonzero(is_train)
    rng = np.random.default_rng(seed)
    rank, n = _rank_within_user(users[idx], rng)
    n_valid = np.minimum(np.rint(n * valid_ratio).astype(np.int64), n - 1)
    if valid_ratio > 0:
        n_valid = np.where(n >= 2, np.maximum(n_valid, 1), 0)
    labels[idx[rank < n_valid]] = VALID
    return labels


def check_disjoint(n_items: int, **parts: np.ndarray) -> None:
    """Raise if a (user, item) pair is in two splits: a leak would inflate every metric."""
    names = list(parts)
    keys = {k: np.unique(v[:, 0] * n_items + v[:, 1]) for k, v in parts.items()}
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            both = np.intersect1d(keys[names[a]], keys[names[b]], assume_unique=True)
            if len(both):
                u, i = divmod(int(both[0]), n_items)
                raise DataError(
                    f"{len(both)} (user, item) pair(s) are in both '{names[a]}' and '{names[b]}', "
                    f"e.g. user {u}, item {i}"
                )

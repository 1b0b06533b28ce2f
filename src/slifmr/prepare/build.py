"""Raw dataset -> the prepared dataset: k-core, dense ids, a train/valid/test split, KG renumbered.

The same pieces as the training pipeline (``data.filter``, ``data.split``), so a prepared
directory read back with ``split=given kcore=0`` is exactly what was written. Entities are
renumbered KGAT-style (kept items ``0..n_items-1``, every other entity after them in its old
order) and their original names follow, which ``pipeline`` does not need but the list files do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from slifmr.data.dataset import TEST, TRAIN, VALID, RawDataset
from slifmr.data.filter import compact, kcore_mask
from slifmr.data.split import random_split
from slifmr.errors import DataError

SPLITS = ("auto", "given", "random", "temporal")


@dataclass
class Prepared:
    """Everything the writer needs; ids dense, items are entities ``0..n_items-1``."""

    name: str
    users: np.ndarray  # (n,) int64
    items: np.ndarray  # (n,) int64
    labels: np.ndarray  # (n,) int8 TRAIN/VALID/TEST, in source order
    n_users: int
    n_items: int
    user_ids: np.ndarray  # original ids (str)
    item_ids: np.ndarray
    kg: np.ndarray | None = None
    entity_ids: np.ndarray | None = None  # (n_entities,) original names
    relation_names: list[str] = field(default_factory=list)
    features: dict[str, np.ndarray] = field(default_factory=dict)
    feature_masks: dict[str, np.ndarray] = field(default_factory=dict)
    feature_missing: dict[str, dict[str, int]] = field(default_factory=dict)  # name -> reason -> count
    split_kind: str = "given"

    @property
    def n_entities(self) -> int:
        return 0 if self.entity_ids is None else len(self.entity_ids)

    def counts(self) -> dict[str, float | int]:
        """Flat counts, keyed like ``RecDataset.summary()`` (what ``data.expected`` compares)."""
        n = len(self.users)
        out: dict[str, float | int] = {
            "users": self.n_users,
            "items": self.n_items,
            "interactions": n,
            "train": int((self.labels == TRAIN).sum()),
            "valid": int((self.labels == VALID).sum()),
            "test": int((self.labels == TEST).sum()),
            "density": n / max(1, self.n_users * self.n_items),
        }
        if self.kg is not None:
            out.update(triples=len(self.kg), entities=self.n_entities, relations=len(self.relation_names))
        for name, mask in self.feature_masks.items():
            out[f"{name}_dim"] = int(self.features[name].shape[1])
            out[f"{name}_coverage"] = int(mask.sum())
        return out


def build(
    raw: RawDataset,
    kcore: int | Sequence[int] = 0,
    split: str = "auto",
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 2025,
    timestamps: np.ndarray | None = None,
) -> Prepared:
    """Filter, compact and split ``raw``; ``split='auto'`` keeps the source's split if it has one."""
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'; allowed: {', '.join(SPLITS)}")
    if split == "auto":
        split = "given" if raw.split is not None else "random"
    if split == "given" and raw.split is None:
        raise DataError(f"--split given, but the source {raw.source} has no split; use --split random")
    if split == "temporal" and timestamps is None:
        raise DataError("--split temporal needs timestamps (--layout csv with a time column)")
    min_u, min_i = (kcore, kcore) if isinstance(kcore, int) else tuple(kcore)
    keep = kcore_mask(raw.users, raw.items, min_u, min_i)
    if not keep.any():
        raise DataError(f"no interaction is left after {min_u}/{min_i}-core filtering; lower --kcore")
    users, old_users = compact(raw.users[keep], raw.n_users)
    items, old_items = compact(raw.items[keep], raw.n_items)
    if split == "given":
        labels = raw.split[keep].astype(np.int8)
    elif split == "random":
        labels = random_split(users, ratios, seed)
    else:
        labels = temporal_split(users, timestamps[keep], ratios)
    if not (labels == TRAIN).any() or not (labels == TEST).any():
        raise DataError(f"the {split} split left no train or no test interaction; check --split / --ratios")

    kg, entity_ids = _renumber_kg(raw, old_items)
    return Prepared(
        name=raw.name,
        users=users,
        items=items,
        labels=labels,
        n_users=len(old_users),
        n_items=len(old_items),
        user_ids=raw.user_ids[old_users].astype(str),
        item_ids=raw.item_ids[old_items].astype(str),
        kg=kg,
        entity_ids=entity_ids,
        relation_names=_relation_names(raw) if kg is not None else [],
        features={k: v[old_items] for k, v in raw.features.items()},
        feature_masks={k: raw.feature_masks[k][old_items] for k in raw.features},
        split_kind=split,
    )


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


def _renumber_kg(raw: RawDataset, old_items: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Kept items become entities 0..k-1, every other entity follows in its old order."""
    if raw.kg is None:
        return None, None
    n_ent = max(raw.n_entities, raw.n_items)
    order = np.concatenate([old_items, np.setdiff1d(np.arange(n_ent), old_items, assume_unique=True)])
    remap = np.empty(n_ent, dtype=np.int64)
    remap[order] = np.arange(n_ent)
    kg = np.stack([remap[raw.kg[:, 0]], raw.kg[:, 1], remap[raw.kg[:, 2]]], axis=1)
    if raw.entity_ids is not None and len(raw.entity_ids) == n_ent:
        names = np.asarray(raw.entity_ids).astype(str)
    else:  # no entity list: items by their ids, other entities by their old number
        names = np.array([f"entity:{k}" for k in range(n_ent)], dtype=object)
        names[: raw.n_items] = [f"item:{t}" for t in raw.item_ids]
        names = names.astype(str)
    return kg, names[order]


def _relation_names(raw: RawDataset) -> list[str]:
    names = [str(r) for r in raw.relation_names]
    return names + [f"r{k}" for k in range(len(names), raw.n_relations)]

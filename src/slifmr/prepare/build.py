"""Raw dataset -> the prepared dataset: the protocol of ``data.pipeline`` plus the names the
KGAT list files need.

Filtering, renumbering and splitting are :func:`slifmr.data.pipeline.filter_and_split` and
:func:`~slifmr.data.pipeline.renumber_kg`, the ones training runs, so a prepared directory read
back with ``split=given kcore=0`` is exactly what was written. This module only resolves
``split='auto'``, names the renumbered entities and relations, and keeps the source order the
writer needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from slifmr.data.dataset import TEST, TRAIN, VALID, RawDataset, count_summary
from slifmr.data.pipeline import SPLITS as PROTOCOL_SPLITS
from slifmr.data.pipeline import filter_and_split, renumber_kg
from slifmr.errors import DataError

SPLITS = ("auto", *PROTOCOL_SPLITS)


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
        """Flat counts, the same as ``RecDataset.summary()`` (what ``data.expected`` compares)."""
        return count_summary(self.n_users, self.n_items, *(int((self.labels == s).sum()) for s in (TRAIN, VALID, TEST)),
                             self.kg, self.n_entities, len(self.relation_names), self.features, self.feature_masks)


def build(
    raw: RawDataset,
    kcore: int | Sequence[int] = 0,
    split: str = "auto",
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 2025,
    timestamps: np.ndarray | None = None,
) -> Prepared:
    """Filter, compact and split ``raw``; ``split='auto'`` keeps the source's split if it has one.
    The source's split is kept as it is (no validation carved out: training does that with
    ``dataset.valid_ratio``), and an empty validation split is allowed."""
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'; allowed: {', '.join(SPLITS)}")
    if split == "auto":
        split = "given" if raw.split is not None else "random"
    f = filter_and_split(raw, kcore, split, ratios, valid_ratio=0.0, seed=seed, timestamps=timestamps,
                         need_valid=False)
    kg, order = renumber_kg(raw, f.old_items)
    return Prepared(
        name=raw.name,
        users=f.users,
        items=f.items,
        labels=f.labels,
        n_users=len(f.old_users),
        n_items=len(f.old_items),
        user_ids=raw.user_ids[f.old_users].astype(str),
        item_ids=raw.item_ids[f.old_items].astype(str),
        kg=kg,
        entity_ids=None if order is None else _entity_names(raw, len(order))[order],
        relation_names=_relation_names(raw) if kg is not None else [],
        features={k: v[f.old_items] for k, v in raw.features.items()},
        feature_masks={k: raw.feature_masks[k][f.old_items] for k in raw.features},
        split_kind=split,
    )


def _entity_names(raw: RawDataset, n_ent: int) -> np.ndarray:
    """(n_ent,) the original name of each entity of ``raw`` (old numbering)."""
    if raw.entity_ids is not None and len(raw.entity_ids) == n_ent:
        return np.asarray(raw.entity_ids).astype(str)
    # no entity list: items by their ids, other entities by their old number
    names = np.array([f"entity:{k}" for k in range(n_ent)], dtype=object)
    names[: raw.n_items] = [f"item:{t}" for t in raw.item_ids]
    return names.astype(str)


def _relation_names(raw: RawDataset) -> list[str]:
    names = [str(r) for r in raw.relation_names]
    return names + [f"r{k}" for k in range(len(names), raw.n_relations)]

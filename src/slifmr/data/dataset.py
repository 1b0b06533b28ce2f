"""The in-memory dataset every reader produces and every model consumes.

Two stages, so readers stay dumb and the protocol (filtering, splitting) lives in one place:

* :class:`RawDataset` -- what a reader found on disk: interactions with dense ids, an optional
  split given by the source, an optional KG, optional feature matrices with presence masks,
  and id maps back to the original ids.
* :class:`RecDataset` -- after k-core filtering and the train/valid/test split; this is what the
  DataModule turns into graphs and batches.

Conventions (SPEC.md "Inputs"): users and items have dense ids ``0..n-1``; in the KG, item ``i``
is entity ``i`` and other entities follow; features are ``(n_items, d)`` float32 with a boolean
presence mask (a missing row is never silently a zero vector).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from slifmr.errors import DataError

# Split labels used in RawDataset.split
TRAIN, VALID, TEST = 0, 1, 2


@dataclass
class RawDataset:
    """Interactions, KG and features as read from one source, before filtering or splitting."""

    name: str
    users: np.ndarray  # (n,) int64 dense user ids
    items: np.ndarray  # (n,) int64 dense item ids
    n_users: int
    n_items: int
    user_ids: np.ndarray  # (n_users,) original ids (str)
    item_ids: np.ndarray  # (n_items,) original ids (str)
    split: np.ndarray | None = None  # (n,) int8 TRAIN/VALID/TEST given by the source, or None
    kg: np.ndarray | None = None  # (m, 3) int64 (head, relation, tail); item i is entity i
    n_entities: int = 0
    relation_names: list[str] = field(default_factory=list)
    entity_ids: np.ndarray | None = None  # (n_entities,) original entity ids (str), optional
    features: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n_items, d) float32
    feature_masks: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n_items,) bool
    source: str = ""

    def __post_init__(self) -> None:
        self.users = np.asarray(self.users, dtype=np.int64)
        self.items = np.asarray(self.items, dtype=np.int64)
        if self.kg is not None:
            self.kg = np.asarray(self.kg, dtype=np.int64).reshape(-1, 3)
            if self.n_entities == 0 and len(self.kg):
                self.n_entities = int(max(self.kg[:, 0].max(), self.kg[:, 2].max()) + 1)
            self.n_entities = max(self.n_entities, self.n_items)
        for name, feat in self.features.items():
            if name not in self.feature_masks:
                self.feature_masks[name] = presence_mask(feat)

    @property
    def n_relations(self) -> int:
        if self.kg is None or len(self.kg) == 0:
            return len(self.relation_names)
        return max(len(self.relation_names), int(self.kg[:, 1].max()) + 1)


@dataclass
class RecDataset:
    """A filtered, split dataset: the single input of the DataModule's graph and batch builders."""

    name: str
    n_users: int
    n_items: int
    train: np.ndarray  # (n_train, 2) int64 (user, item), unique pairs
    valid: np.ndarray  # (n_valid, 2)
    test: np.ndarray  # (n_test, 2)
    user_ids: np.ndarray  # (n_users,) original ids
    item_ids: np.ndarray  # (n_items,) original ids
    kg: np.ndarray | None = None  # (m, 3) int64, item i is entity i
    n_entities: int = 0
    n_relations: int = 0
    relation_names: list[str] = field(default_factory=list)
    features: dict[str, np.ndarray] = field(default_factory=dict)
    feature_masks: dict[str, np.ndarray] = field(default_factory=dict)

    def summary(self) -> dict[str, float | int]:
        """Flat counts (:func:`count_summary`)."""
        return count_summary(self.n_users, self.n_items, len(self.train), len(self.valid), len(self.test),
                             self.kg, self.n_entities, self.n_relations, self.features, self.feature_masks)


def count_summary(n_users: int, n_items: int, n_train: int, n_valid: int, n_test: int, kg: np.ndarray | None,
                  n_entities: int, n_relations: int, features: dict[str, np.ndarray],
                  feature_masks: dict[str, np.ndarray]) -> dict[str, float | int]:
    """The one flat count of a split dataset, keyed as ``data.expected`` and the prepare manifest
    read it: users, items, interactions per split, density, KG sizes, feature dims and coverage."""
    n = n_train + n_valid + n_test
    out: dict[str, float | int] = {
        "users": n_users,
        "items": n_items,
        "interactions": n,
        "train": n_train,
        "valid": n_valid,
        "test": n_test,
        "density": n / max(1, n_users * n_items),
    }
    if kg is not None:
        out.update(triples=len(kg), entities=n_entities, relations=n_relations)
    for name, mask in feature_masks.items():
        out[f"{name}_dim"] = int(features[name].shape[1])
        out[f"{name}_coverage"] = int(mask.sum())
    return out


def presence_mask(feat: np.ndarray) -> np.ndarray:
    """Rows that are all zero are 'missing' (SPEC: zero rows are not similar to everything)."""
    return np.abs(feat).sum(axis=1) > 0


def check_features(name: str, feat: np.ndarray, n_items: int, path: str) -> np.ndarray:
    """Validate one feature matrix: 2-D, one row per item, finite. Returns float32."""
    if feat.ndim != 2:
        raise DataError(f"feature '{name}' must be a 2-D matrix (items x dims), got shape {feat.shape}", path)
    if feat.dtype.kind not in "biuf":  # bool, ints, floats; not strings, objects or complex numbers
        raise DataError(f"feature '{name}' has dtype {feat.dtype}, expected real numbers (float or int)", path)
    if feat.shape[1] == 0:
        raise DataError(f"feature '{name}' has shape {feat.shape}: no dimensions", path)
    if feat.shape[0] != n_items:
        raise DataError(
            f"feature '{name}' has {feat.shape[0]} rows but the dataset has {n_items} items "
            "(row i must be item i)",
            path,
        )
    feat = np.ascontiguousarray(feat, dtype=np.float32)
    bad = ~np.isfinite(feat).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise DataError(
            f"feature '{name}' has NaN/inf values in {len(rows)} row(s), first at row {int(rows[0])}",
            path,
        )
    return feat

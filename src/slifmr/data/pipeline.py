"""Raw dataset -> filtered, renumbered, split dataset: the evaluation protocol, written once.

Training (:func:`build_rec_dataset`, through the DataModule) and ``slifmr.prepare`` (which only
adds names and writing) both call :func:`filter_and_split` and :func:`renumber_kg`, so a prepared
directory read back with ``split=given kcore=0`` is exactly what was written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from slifmr.data.dataset import TEST, TRAIN, VALID, RawDataset, RecDataset
from slifmr.data.filter import compact, kcore_mask
from slifmr.data.split import carve_valid, check_disjoint, random_split, temporal_split
from slifmr.errors import DataError

log = logging.getLogger(__name__)

SPLITS = ("random", "given", "temporal")


@dataclass
class FilteredSplit:
    """The interactions kept by the k-core, with dense ids and a split label each (source order)."""

    users: np.ndarray  # (n,) int64 dense user ids
    items: np.ndarray  # (n,) int64 dense item ids
    labels: np.ndarray  # (n,) int8 TRAIN / VALID / TEST
    old_users: np.ndarray  # (n_users,) the raw id of each dense user
    old_items: np.ndarray  # (n_items,) the raw id of each dense item

    def part(self, label: int) -> np.ndarray:
        """(m, 2) (user, item) pairs of one split, in source order."""
        sel = self.labels == label
        return np.stack([self.users[sel], self.items[sel]], axis=1)


def filter_and_split(
    raw: RawDataset,
    kcore: int | Sequence[int] = 0,
    split: str = "random",
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    valid_ratio: float = 0.1,
    seed: int = 0,
    timestamps: np.ndarray | None = None,
    need_valid: bool = True,
) -> FilteredSplit:
    """k-core filter, compact ids and split.

    ``kcore`` is one threshold for users and items, or ``[min_user, min_item]``; 0 = off.
    ``split='random'``: seeded per-user ``ratios`` split of all interactions (the paper's
    80/10/10). ``split='given'``: the source's split, ``valid_ratio`` of each user's train
    items carved out as validation (seeded; 0 keeps the source's split as it is).
    ``split='temporal'``: per user, the newest interactions by ``timestamps`` (one per raw
    interaction) are test, the ones before valid, in ``ratios``' counts.
    Train and test must not be empty; valid neither, when ``need_valid`` and some was asked for.
    """
    where = f"dataset '{raw.name}'" + (f" ({raw.source})" if raw.source else "")
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}' for {where}: expected one of {SPLITS}")
    if split == "given" and raw.split is None:
        raise DataError(f"split='given' but {where} has no split of its own (no given split); use split=random")
    if split == "temporal" and timestamps is None:
        raise DataError(f"split temporal needs timestamps, and {where} has none (prepare --layout csv with a "
                        "time column)")
    min_u, min_i = (kcore, kcore) if isinstance(kcore, int) else tuple(kcore)
    keep = kcore_mask(raw.users, raw.items, min_u, min_i)
    if not keep.any():
        raise DataError(f"{where}: no interaction is left after {min_u}/{min_i}-core filtering; lower the k-core "
                        "(dataset.kcore, prepare --kcore)")
    users, old_users = compact(raw.users[keep], raw.n_users)
    items, old_items = compact(raw.items[keep], raw.n_items)
    if split == "random":
        labels = random_split(users, ratios, seed)
    elif split == "given":
        labels = carve_valid(users, raw.split[keep].astype(np.int8), valid_ratio, seed)
    else:
        labels = temporal_split(users, np.asarray(timestamps)[keep], ratios)
    out = FilteredSplit(users, items, labels, old_users, old_items)
    valid_asked = valid_ratio > 0 if split == "given" else ratios[1] > 0
    for name, lab in (("train", TRAIN), ("valid", VALID), ("test", TEST)):
        if not (labels == lab).any() and (name != "valid" or (need_valid and valid_asked)):
            raise DataError(f"{where}: the {name} split is empty after filtering and splitting ({split}); "
                            "check the split settings")
    check_disjoint(len(old_items), **{n: out.part(lab) for n, lab in (("train", TRAIN), ("valid", VALID),
                                                                        ("test", TEST))})
    return out


def dedupe_triples(kg: np.ndarray | None, source: str) -> np.ndarray | None:
    """Each (head, relation, tail) once, in first-occurrence order; says how many repeats it dropped
    (a repeated triple would weigh its edge twice in every KG aggregation)."""
    if kg is None or len(kg) == 0:
        return kg
    _, first = np.unique(kg, axis=0, return_index=True)
    if len(first) == len(kg):
        return kg
    log.warning("%s: dropped %d duplicate KG triple(s) of %d (each triple is kept once)",
                source, len(kg) - len(first), len(kg))
    return kg[np.sort(first)]


def renumber_kg(raw: RawDataset, old_items: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(KG, each triple once, with kept items as entities ``0..k-1`` and every other entity after
    them in its old order; the old entity id of each new entity), or (None, None) without a KG.

    Items dropped by filtering stay in the KG as ordinary entities: their triples still link
    kept items through shared attributes.
    """
    kg = dedupe_triples(raw.kg, raw.source or raw.name)
    if kg is None:
        return None, None
    n_ent = max(raw.n_entities, raw.n_items)
    order = np.concatenate([old_items, np.setdiff1d(np.arange(n_ent), old_items, assume_unique=True)])
    remap = np.empty(n_ent, dtype=np.int64)
    remap[order] = np.arange(n_ent)
    kg = np.stack([remap[kg[:, 0]], kg[:, 1], remap[kg[:, 2]]], axis=1)
    return kg, order


def build_rec_dataset(
    raw: RawDataset,
    kcore: int | Sequence[int] = 0,
    split: str = "random",
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    valid_ratio: float = 0.1,
    seed: int = 0,
    timestamps: np.ndarray | None = None,
) -> RecDataset:
    """The dataset training reads: :func:`filter_and_split` + :func:`renumber_kg`, features of the
    kept items."""
    f = filter_and_split(raw, kcore, split, ratios, valid_ratio, seed, timestamps)
    kg, order = renumber_kg(raw, f.old_items)
    return RecDataset(
        name=raw.name,
        n_users=len(f.old_users),
        n_items=len(f.old_items),
        train=f.part(TRAIN),
        valid=f.part(VALID),
        test=f.part(TEST),
        user_ids=raw.user_ids[f.old_users],
        item_ids=raw.item_ids[f.old_items],
        kg=kg,
        n_entities=0 if order is None else len(order),
        n_relations=raw.n_relations,
        relation_names=list(raw.relation_names),
        features={k: v[f.old_items] for k, v in raw.features.items()},
        feature_masks={k: v[f.old_items] for k, v in raw.feature_masks.items()},
    )

"""Raw dataset -> filtered, split RecDataset (the evaluation protocol lives here, once)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from slifmr.data.dataset import TEST, TRAIN, VALID, RawDataset, RecDataset
from slifmr.data.filter import compact, kcore_mask
from slifmr.data.split import carve_valid, check_disjoint, random_split
from slifmr.errors import DataError

log = logging.getLogger(__name__)

SPLITS = ("random", "given")


def build_rec_dataset(
    raw: RawDataset,
    kcore: int | Sequence[int] = 0,
    split: str = "random",
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    valid_ratio: float = 0.1,
    seed: int = 0,
) -> RecDataset:
    """Filter, compact ids and split.

    ``kcore`` is one threshold for users and items, or ``[min_user, min_item]``; 0 = off.
    ``split='random'``: seeded per-user ``ratios`` split of all interactions (the paper's
    80/10/10). ``split='given'``: the source's train/test split, ``valid_ratio`` of each user's
    train items carved out as validation (seeded).
    """
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}' for dataset '{raw.name}': expected one of {SPLITS}")
    if split == "given" and raw.split is None:
        raise DataError(f"split='given' but dataset '{raw.name}' ({raw.source}) has no given split; use split=random")
    min_u, min_i = (kcore, kcore) if isinstance(kcore, int) else tuple(kcore)
    keep = kcore_mask(raw.users, raw.items, min_u, min_i)
    if not keep.any():
        raise DataError(
            f"dataset '{raw.name}' ({raw.source}): no interaction is left after {min_u}/{min_i}-core "
            "filtering; lower dataset.kcore"
        )
    users, old_users = compact(raw.users[keep], raw.n_users)
    items, old_items = compact(raw.items[keep], raw.n_items)
    n_users, n_items = len(old_users), len(old_items)

    if split == "random":
        labels = random_split(users, ratios, seed)
    else:
        labels = carve_valid(users, raw.split[keep], valid_ratio, seed)
    pairs = np.stack([users, items], axis=1)
    parts = {name: pairs[labels == lab] for name, lab in (("train", TRAIN), ("valid", VALID), ("test", TEST))}
    for name, part in parts.items():
        if len(part) == 0 and not (name == "valid" and (ratios[1] == 0 if split == "random" else valid_ratio == 0)):
            raise DataError(f"dataset '{raw.name}' ({raw.source}): the {name} split is empty after filtering and splitting")
    check_disjoint(n_items, **parts)

    kg, n_entities = _remap_kg(raw, dedupe_triples(raw.kg, raw.source or raw.name), old_items, n_items)
    features = {k: v[old_items] for k, v in raw.features.items()}
    masks = {k: v[old_items] for k, v in raw.feature_masks.items()}
    return RecDataset(
        name=raw.name,
        n_users=n_users,
        n_items=n_items,
        train=parts["train"],
        valid=parts["valid"],
        test=parts["test"],
        user_ids=raw.user_ids[old_users],
        item_ids=raw.item_ids[old_items],
        kg=kg,
        n_entities=n_entities,
        n_relations=raw.n_relations,
        relation_names=list(raw.relation_names),
        features=features,
        feature_masks=masks,
    )


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


def _remap_kg(raw: RawDataset, kg: np.ndarray | None, old_items: np.ndarray,
              n_items: int) -> tuple[np.ndarray | None, int]:
    """Renumber entities so kept items are 0..n_items-1 and every other entity follows.

    Items dropped by filtering stay in the KG as ordinary entities: their triples still link
    kept items through shared attributes.
    """
    if kg is None:
        return None, 0
    n_ent = raw.n_entities
    remap = np.full(n_ent, -1, dtype=np.int64)
    remap[old_items] = np.arange(n_items)
    others = np.flatnonzero(remap < 0)
    remap[others] = n_items + np.arange(len(others))
    kg = np.stack([remap[kg[:, 0]], kg[:, 1], remap[kg[:, 2]]], axis=1)
    return kg, n_ent  # a renumbering: dropped items stay as ordinary entities

"""Noise injection for the robustness study (SPEC.md, Fig. 7).

Three independent kinds, each a fraction in [0, 1):

* ``interaction`` -- in train and (separately) in valid, ``round(p * n)`` rows get their item
  replaced by a uniformly random item the user never interacted with in any split, so no test
  item leaks into training and no pair is duplicated. The test split is never touched.
* ``kg`` -- ``round(p * m)`` triples get a uniformly random tail entity other than their own.
* ``modality`` -- per feature matrix, ``round(p * present)`` present rows become absent (mask
  False, row zeroed), i.e. the item loses that modality.

Every kind (and train vs. valid) draws from its own child of ``SeedSequence(seed)``, so changing
one ratio leaves the other kinds' noise bit-identical; the noise seed is separate from the model
seed so one noisy dataset can be trained with several model seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from slifmr.data.dataset import RecDataset
from slifmr.errors import DataError

# Child-stream slots of SeedSequence(seed).spawn(); fixed so adding a kind never reshuffles others.
_TRAIN, _VALID, _KG, _MODALITY = range(4)


@dataclass
class NoiseConfig:
    """Noise ratios of one run (Hydra group ``noise``); all zero = the clean dataset."""

    interaction: float = 0.0  # fraction of train (and valid) interactions replaced
    kg: float = 0.0  # fraction of KG triples whose tail is replaced
    modality: float = 0.0  # fraction of item rows removed per modality
    seed: int = 0  # separate from the model seed on purpose

    def apply(self, ds: RecDataset) -> RecDataset:
        return inject_noise(ds, self.interaction, self.kg, self.modality, self.seed)


def inject_noise(
    ds: RecDataset, interaction: float = 0.0, kg: float = 0.0, modality: float = 0.0, seed: int = 0
) -> RecDataset:
    """Return a new dataset with the requested noise; the input's arrays are never modified.

    All ratios zero returns ``ds`` itself. Interaction noise is exact except on degenerate data:
    a chosen row whose user has no free item left (interacted with every item, or fewer free
    items than chosen rows) keeps its original item.
    """
    ratios = {"interaction": interaction, "kg": kg, "modality": modality}
    for name, p in ratios.items():
        try:
            ok = 0.0 <= float(p) < 1.0  # NaN compares False, so it is rejected too
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise DataError(f"noise.{name} must be in [0, 1), got {p!r}")
    if not any(ratios.values()):
        return ds
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)]
    changes: dict[str, object] = {}

    if interaction > 0:
        taken = _sorted_unique(_keys(np.concatenate([ds.train, ds.valid, ds.test]), ds.n_items))
        train, new_train = _replace_items(ds.train, interaction, ds.n_items, taken, streams[_TRAIN])
        # valid must also avoid the pairs just added to train
        taken = _merge(taken, new_train)
        valid, _ = _replace_items(ds.valid, interaction, ds.n_items, taken, streams[_VALID])
        changes.update(train=train, valid=valid)

    if kg > 0:
        if ds.kg is None or len(ds.kg) == 0:
            raise DataError(f"noise.kg is {kg} but dataset '{ds.name}' has no knowledge graph")
        changes["kg"] = _corrupt_tails(ds.kg, kg, max(ds.n_entities, int(ds.kg[:, [0, 2]].max()) + 1), streams[_KG])

    if modality > 0:
        if not ds.features:
            raise DataError(f"noise.modality is {modality} but dataset '{ds.name}' has no item features")
        rng = streams[_MODALITY]
        features, masks = dict(ds.features), dict(ds.feature_masks)
        for name in sorted(features):  # sorted: draws do not depend on dict insertion order
            features[name], masks[name] = _drop_rows(features[name], masks[name], modality, rng)
        changes.update(features=features, feature_masks=masks)

    return replace(ds, **changes)


def _keys(pairs: np.ndarray, n_items: int) -> np.ndarray:
    """(user, item) -> one int64 key, so set membership is a sorted search."""
    return pairs[:, 0].astype(np.int64) * n_items + pairs[:, 1]


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    """Sort-based unique (numpy 2's hash-based np.unique is ~10x slower on 1M int64 keys)."""
    keys = np.sort(keys)
    return keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if len(keys) else keys


def _merge(taken: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Insert sorted keys absent from ``taken`` into it, in linear time."""
    new = np.sort(new)
    return np.insert(taken, np.searchsorted(taken, new), new)


def _replace_items(
    pairs: np.ndarray, p: float, n_items: int, taken: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Replace the item of ``round(p*n)`` random rows by a free item of the same user.

    ``taken``: sorted unique keys no new pair may hit. Each round draws, for every pending row,
    an item uniformly among the user's free items (exactly, by rank -- no rejection, so dense
    users cost nothing extra); only rows that drew the same new pair as an earlier row in that
    round are redrawn next round. Returns the noisy copy and the new keys.
    """
    k = round(p * len(pairs))
    if k == 0:
        return pairs, np.empty(0, np.int64)
    rows = rng.choice(len(pairs), size=k, replace=False)
    users = pairs[rows, 0].astype(np.int64)
    out = pairs.copy()
    accepted: list[np.ndarray] = []
    pending = np.arange(k)
    while len(pending):
        items = _draw_free(users[pending], taken, n_items, rng)
        ok = items >= 0  # -1: user has no free item left; row stays unchanged
        pending, items = pending[ok], items[ok]
        keys = users[pending] * n_items + items
        _, first = np.unique(keys, return_index=True)  # first draw of each new pair wins
        win = np.zeros(len(keys), bool)
        win[first] = True
        out[rows[pending[win]], 1] = items[win]
        accepted.append(keys[win])
        taken = _merge(taken, keys[win])
        pending = pending[~win]
    return out, np.concatenate(accepted) if accepted else np.empty(0, np.int64)


def _draw_free(users: np.ndarray, taken: np.ndarray, n_items: int, rng: np.random.Generator) -> np.ndarray:
    """One uniform item per query user among the items not in ``taken`` (-1 if none is free).

    Within a user's sorted taken items s_0 < s_1 < ..., g_j = s_j - j is the number of free items
    below s_j; the r-th free item is r + #{j : g_j <= r}. With keys user*n_items + item, the
    global array ``taken - local_index`` is sorted, so one searchsorted answers all users.
    """
    start = np.searchsorted(taken, users * n_items)
    free = n_items - (np.searchsorted(taken, (users + 1) * n_items) - start)
    idx = np.arange(len(taken))
    user = taken // n_items
    seg_start = np.maximum.accumulate(np.where(np.concatenate(([True], user[1:] != user[:-1])), idx, 0))
    gaps = taken - (idx - seg_start)
    out = np.full(len(users), -1, np.int64)
    has = free > 0
    r = rng.integers(0, free[has])
    below = np.searchsorted(gaps, users[has] * n_items + r, side="right") - start[has]
    out[has] = r + below
    return out


def _corrupt_tails(kg: np.ndarray, p: float, n_entities: int, rng: np.random.Generator) -> np.ndarray:
    """Give ``round(p*m)`` random triples a uniform tail among the *other* entities."""
    k = round(p * len(kg))
    if k == 0 or n_entities < 2:
        return kg
    rows = rng.choice(len(kg), size=k, replace=False)
    out = kg.copy()
    out[rows, 2] = (kg[rows, 2] + rng.integers(1, n_entities, size=k)) % n_entities
    return out


def _drop_rows(
    feat: np.ndarray, mask: np.ndarray, p: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Make ``round(p * present)`` present rows absent: mask False and row zeroed (on copies)."""
    present = np.flatnonzero(mask)
    k = round(p * len(present))
    if k == 0:
        return feat, mask
    rows = rng.choice(present, size=k, replace=False)
    feat, mask = feat.copy(), mask.copy()
    feat[rows] = 0
    mask[rows] = False
    return feat, mask


__all__ = ["NoiseConfig", "inject_noise"]

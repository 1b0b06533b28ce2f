import numpy as np
import pytest

from slifmr.data.dataset import RecDataset
from slifmr.data.noise import NoiseConfig, _draw_free, inject_noise
from slifmr.errors import DataError


def _synthetic(n_users: int = 200, n_items: int = 120, per_user: int = 15, seed: int = 0) -> RecDataset:
    """Unique pairs, split per row 70/15/15; a KG over items + 50 extra entities; two modalities."""
    rng = np.random.default_rng(seed)
    pairs = np.array([(u, i) for u in range(n_users) for i in rng.choice(n_items, per_user, replace=False)])
    lab = rng.choice(3, len(pairs), p=[0.7, 0.15, 0.15])
    n_ent = n_items + 50
    kg = np.stack([rng.integers(0, n_items, 600), rng.integers(0, 5, 600), rng.integers(0, n_ent, 600)], 1)
    vis = rng.normal(size=(n_items, 8)).astype(np.float32)
    txt = rng.normal(size=(n_items, 4)).astype(np.float32)
    txt[:20] = 0  # 20 items already lack text
    txt_mask = np.ones(n_items, bool)
    txt_mask[:20] = False
    return RecDataset(
        name="syn", n_users=n_users, n_items=n_items,
        train=pairs[lab == 0], valid=pairs[lab == 1], test=pairs[lab == 2],
        user_ids=np.arange(n_users).astype(str), item_ids=np.arange(n_items).astype(str),
        kg=kg, n_entities=n_ent, n_relations=5,
        features={"visual": vis, "text": txt},
        feature_masks={"visual": np.ones(n_items, bool), "text": txt_mask},
    )  # fmt: skip


def _keys(pairs: np.ndarray, n_items: int) -> np.ndarray:
    return pairs[:, 0] * n_items + pairs[:, 1]


def _check_interactions(ds: RecDataset, out: RecDataset, p: float) -> None:
    """Exact count, except rows of users holding every item, which must stay unchanged."""
    pairs = np.concatenate([ds.train, ds.valid, ds.test])
    everything = set(_keys(pairs, ds.n_items).tolist())
    full = np.flatnonzero(np.bincount(pairs[:, 0], minlength=ds.n_users) >= ds.n_items)
    for split in ("train", "valid"):
        before, after = getattr(ds, split), getattr(out, split)
        changed = (before != after).any(1)
        k, of_full = round(p * len(before)), np.isin(before[:, 0], full)
        assert k - of_full.sum() <= changed.sum() <= k, split
        assert changed.sum() == k or of_full.any(), split
        assert not (changed & of_full).any()
        assert (after[:, 0] == before[:, 0]).all()  # only items are replaced
        new = _keys(after[changed], ds.n_items)
        assert not set(new.tolist()) & everything  # never an item the user had in any split
    noisy = np.concatenate([out.train, out.valid, out.test])
    assert len(np.unique(_keys(noisy, ds.n_items))) == len(noisy)  # no duplicate pair anywhere
    assert ((out.train[:, 1] >= 0) & (out.train[:, 1] < ds.n_items)).all()


@pytest.mark.parametrize("p", [0.05, 0.2, 0.5])
def test_interaction_noise_exact_and_clean(p):
    ds = _synthetic()
    out = inject_noise(ds, interaction=p, seed=1)
    _check_interactions(ds, out, p)
    assert out.test is ds.test or np.array_equal(out.test, ds.test)
    assert out.kg is ds.kg and out.features["text"] is ds.features["text"]


def test_input_never_mutated():
    ds = _synthetic()
    snap = {k: getattr(ds, k).copy() for k in ("train", "valid", "test", "kg")}
    feats = {k: v.copy() for k, v in ds.features.items()}
    masks = {k: v.copy() for k, v in ds.feature_masks.items()}
    out = inject_noise(ds, interaction=0.3, kg=0.3, modality=0.3, seed=2)
    assert out is not ds
    for k, v in snap.items():
        assert np.array_equal(getattr(ds, k), v), k
    for k in feats:
        assert np.array_equal(ds.features[k], feats[k]) and np.array_equal(ds.feature_masks[k], masks[k])


def test_dense_users_and_full_user():
    # user 0 has every item (nothing to replace with): its rows stay; user 1 misses exactly 2 items
    n_items = 10
    train = np.array([(0, i) for i in range(8)] + [(1, i) for i in range(6)] + [(2, 0), (2, 1)])
    valid = np.array([(0, 8), (1, 6)])
    test = np.array([(0, 9), (1, 7)])
    ds = RecDataset("d", 3, n_items, train, valid, test, np.arange(3), np.arange(n_items))
    for seed in range(20):
        out = inject_noise(ds, interaction=0.9, seed=seed)
        changed = (out.train != train).any(1)
        assert not changed[:8].any()  # the full user is left unchanged (documented)
        assert changed[8:14].sum() <= 2  # only two free items for user 1
        assert set(out.train[8:14][changed[8:14], 1].tolist()) <= {8, 9}
        noisy = np.concatenate([out.train, out.valid, out.test])
        assert len(np.unique(_keys(noisy, n_items))) == len(noisy)


def test_draw_free_is_uniform_over_free_items():
    n_items = 12
    taken = np.sort(np.array([0, 3, 4, 11, n_items + 5]))  # user 0 holds 0,3,4,11; user 1 holds 5
    rng = np.random.default_rng(0)
    got = _draw_free(np.zeros(40_000, np.int64), taken, n_items, rng)
    counts = np.bincount(got, minlength=n_items)
    assert set(np.flatnonzero(counts).tolist()) == {1, 2, 5, 6, 7, 8, 9, 10}
    assert counts[counts > 0].min() > 0.9 * 40_000 / 8
    assert set(_draw_free(np.ones(500, np.int64), taken, n_items, rng).tolist()) == set(range(12)) - {5}


def test_seeds_and_independent_streams():
    ds = _synthetic()
    a = inject_noise(ds, interaction=0.2, kg=0.1, modality=0.1, seed=5)
    b = inject_noise(ds, interaction=0.2, kg=0.1, modality=0.1, seed=5)
    c = inject_noise(ds, interaction=0.2, kg=0.1, modality=0.1, seed=6)
    for k in ("train", "valid", "kg"):
        assert np.array_equal(getattr(a, k), getattr(b, k))
        assert not np.array_equal(getattr(a, k), getattr(c, k))
    assert np.array_equal(a.feature_masks["visual"], b.feature_masks["visual"])
    assert not np.array_equal(a.feature_masks["visual"], c.feature_masks["visual"])
    # changing the KG / modality ratios leaves the interaction noise identical, and vice versa
    d = inject_noise(ds, interaction=0.2, kg=0.15, modality=0.0, seed=5)
    assert np.array_equal(a.train, d.train) and np.array_equal(a.valid, d.valid)
    e = inject_noise(ds, interaction=0.1, kg=0.1, modality=0.1, seed=5)
    assert np.array_equal(a.kg, e.kg) and np.array_equal(a.features["text"], e.features["text"])
    assert not np.array_equal(a.train, e.train)


def test_kg_noise():
    ds = _synthetic()
    out = inject_noise(ds, kg=0.2, seed=3)
    changed = (out.kg != ds.kg).any(1)
    assert changed.sum() == round(0.2 * len(ds.kg))
    assert (out.kg[:, :2] == ds.kg[:, :2]).all()  # only tails change
    assert ((out.kg[:, 2] >= 0) & (out.kg[:, 2] < ds.n_entities)).all()
    assert out.train is ds.train and out.valid is ds.valid and out.test is ds.test
    # tails land on non-item entities too (uniform over all entities)
    assert (out.kg[changed, 2] >= ds.n_items).any()


def test_modality_absence():
    ds = _synthetic()
    out = inject_noise(ds, modality=0.25, seed=4)
    for name in ("visual", "text"):
        before, after = ds.feature_masks[name], out.feature_masks[name]
        dropped = before & ~after
        assert dropped.sum() == round(0.25 * before.sum()), name
        assert not (after & ~before).any()  # nothing comes back
        assert (out.features[name][~after] == 0).all()
        assert np.array_equal(out.features[name][after], ds.features[name][after])
        assert out.features[name].dtype == np.float32


@pytest.mark.parametrize("field,value", [("interaction", 1.5), ("kg", -0.1), ("modality", 1.0), ("kg", float("nan"))])
def test_bad_ratio(field, value):
    with pytest.raises(DataError, match=f"noise.{field} must be in \\[0, 1\\)"):
        inject_noise(_synthetic(), **{field: value})


def test_zero_is_identity_and_missing_parts_raise():
    ds = _synthetic()
    assert inject_noise(ds) is ds and NoiseConfig().apply(ds) is ds
    bare = RecDataset("b", 1, 2, np.array([[0, 0]]), np.empty((0, 2), np.int64), np.array([[0, 1]]),
                      np.arange(1), np.arange(2))  # fmt: skip
    with pytest.raises(DataError, match="no knowledge graph"):
        inject_noise(bare, kg=0.1)
    with pytest.raises(DataError, match="no item features"):
        inject_noise(bare, modality=0.1)


def test_config_apply_matches_function():
    ds = _synthetic()
    a = NoiseConfig(interaction=0.1, kg=0.1, modality=0.1, seed=9).apply(ds)
    b = inject_noise(ds, 0.1, 0.1, 0.1, 9)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.kg, b.kg)


def test_real_tiny_dataset(shared_data):
    from slifmr.data.formats import read_dataset
    from slifmr.data.pipeline import build_rec_dataset

    ds = build_rec_dataset(read_dataset("kgat", shared_data / "ml-100k-kg-tiny"), split="given", seed=0)
    out = inject_noise(ds, interaction=0.2, kg=0.2, modality=0.2, seed=0)
    _check_interactions(ds, out, 0.2)  # note: one user there has all 200 items; its rows stay
    assert out.test is ds.test
    assert (out.kg != ds.kg).any(1).sum() == round(0.2 * len(ds.kg))
    assert ((out.kg[:, 2] >= 0) & (out.kg[:, 2] < ds.n_entities)).all()
    for name, mask in ds.feature_masks.items():
        assert (mask & ~out.feature_masks[name]).sum() == round(0.2 * mask.sum())

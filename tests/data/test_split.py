import numpy as np
import pytest

from slifmr.data.dataset import TEST, TRAIN, VALID, RawDataset
from slifmr.data.filter import compact, kcore_mask
from slifmr.data.pipeline import build_rec_dataset
from slifmr.data.split import carve_valid, check_disjoint, random_split
from slifmr.errors import DataError


def test_kcore_hand_case():
    # user 0: items 0,1 ; user 1: items 0,1 ; user 2: item 2 only.
    # 2-core: user 2 has 1 interaction -> dropped; then item 2 has 0 -> gone. Others have 2.
    users = np.array([0, 0, 1, 1, 2])
    items = np.array([0, 1, 0, 1, 2])
    assert kcore_mask(users, items, 2, 2).tolist() == [True, True, True, True, False]
    assert kcore_mask(users, items, 0, 0).all()


def test_kcore_iterates_to_fixed_point():
    # dropping user 1 (1 interaction) leaves item 1 with one interaction -> user 0 falls below 2 too
    users = np.array([0, 0, 1, 2, 2, 3, 3])
    items = np.array([0, 1, 1, 0, 2, 0, 2])
    keep = kcore_mask(users, items, 2, 2)
    u, i = users[keep], items[keep]
    assert (np.bincount(u)[np.unique(u)] >= 2).all() and (np.bincount(i)[np.unique(i)] >= 2).all()
    assert 0 not in u and 1 not in u


def test_kcore_matches_shared_readme_counts(shared_data):
    from slifmr.data.formats import read_dataset

    raw = read_dataset("kgat", shared_data / "ml-100k-kg")
    keep = kcore_mask(raw.users, raw.items, 10, 10)
    # ml-100k-kg README: 10-core keeps 97,953 interactions, 943 users, 1,152 items
    assert keep.sum() == 97_953
    assert len(np.unique(raw.users[keep])) == 943 and len(np.unique(raw.items[keep])) == 1_152


def test_compact():
    new, old = compact(np.array([5, 2, 5, 9]), 10)
    assert new.tolist() == [1, 0, 1, 2] and old.tolist() == [2, 5, 9]


def test_random_split_ratios_and_seed():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(200), rng.integers(10, 40, 200))
    labels = random_split(users, (0.8, 0.1, 0.1), seed=3)
    for lab, share in ((TRAIN, 0.8), (VALID, 0.1), (TEST, 0.1)):
        assert abs((labels == lab).mean() - share) < 0.02
    per_user_test = np.bincount(users[labels == TEST], minlength=200)
    assert (per_user_test >= 1).all()
    assert (random_split(users, (0.8, 0.1, 0.1), seed=3) == labels).all()
    assert (random_split(users, (0.8, 0.1, 0.1), seed=4) != labels).any()


def test_random_split_keeps_a_train_item():
    users = np.array([0, 1, 1, 2, 2, 2])
    labels = random_split(users, (0.0, 0.5, 0.5), seed=0)
    assert (np.bincount(users[labels == TRAIN], minlength=3) >= 1).all()


def test_random_split_rejects_bad_ratios():
    with pytest.raises(DataError, match="ratios"):
        random_split(np.array([0, 0]), (0.5, 0.5, 0.5), 0)


def test_carve_valid_keeps_test():
    users = np.repeat(np.arange(50), 20)
    given = np.where(np.arange(len(users)) % 5 == 0, TEST, TRAIN).astype(np.int8)
    labels = carve_valid(users, given, 0.125, seed=1)
    assert ((given == TEST) == (labels == TEST)).all()
    assert (np.bincount(users[labels == VALID], minlength=50) == 2).all()  # 16 train * 0.125


def test_check_disjoint_names_both_splits():
    a = np.array([[0, 1], [1, 2]])
    b = np.array([[1, 2]])
    with pytest.raises(DataError, match="'train' and 'test'.*user 1, item 2"):
        check_disjoint(5, train=a, test=b)


def _raw(users, items, n_users, n_items, **kw):
    return RawDataset(name="t", users=np.array(users), items=np.array(items), n_users=n_users, n_items=n_items,
                      user_ids=np.array([f"u{i}" for i in range(n_users)]),
                      item_ids=np.array([f"i{i}" for i in range(n_items)]), **kw)


def test_pipeline_remaps_kg_and_features():
    # item 1 is filtered out by 2-core; it must remain in the KG as an ordinary entity.
    users = [0, 0, 1, 1, 2, 2, 0]
    items = [0, 2, 0, 2, 0, 2, 1]
    kg = np.array([[0, 0, 3], [1, 0, 3], [2, 1, 1]])  # entity 3 = attribute
    feat = np.arange(6, dtype=np.float32).reshape(3, 2) + 1
    raw = _raw(users, items, 3, 3, kg=kg, n_entities=4, features={"text": feat})
    ds = build_rec_dataset(raw, kcore=(1, 2), ratios=(0.5, 0.0, 0.5), seed=0)
    assert ds.n_items == 2 and ds.item_ids.tolist() == ["i0", "i2"]
    assert ds.n_entities == 4
    # old item 2 -> new item 1; old item 1 -> entity 2; attribute 3 -> entity 3
    assert ds.kg.tolist() == [[0, 0, 3], [2, 0, 3], [1, 1, 2]]
    assert ds.features["text"].tolist() == [[1, 2], [5, 6]]


def test_pipeline_empty_after_filter_is_an_error():
    raw = _raw([0, 1], [0, 1], 2, 2)
    with pytest.raises(DataError, match="no interaction is left after 5/5-core"):
        build_rec_dataset(raw, kcore=5)


def test_pipeline_given_split_required():
    raw = _raw([0, 0, 0], [0, 1, 2], 1, 3)
    with pytest.raises(DataError, match="no given split"):
        build_rec_dataset(raw, split="given")


# -- one protocol: training (build_rec_dataset) and prepare (build) share the builder ---------------
def _protocol_raw() -> RawDataset:
    rng = np.random.default_rng(3)
    keys = rng.choice(12 * 15, 110, replace=False)
    users, items = keys // 15, keys % 15
    kg = np.array([[0, 0, 15], [3, 1, 16], [14, 0, 15], [0, 0, 15]])  # the last repeats the first
    feat = rng.random((15, 4)).astype(np.float32)
    return _raw(users, items, 12, 15, kg=kg, n_entities=17, features={"text": feat})


def test_prepare_and_training_build_the_same_split_and_counts():
    from slifmr.prepare.build import build

    raw = _protocol_raw()
    ds = build_rec_dataset(raw, kcore=2, split="random", ratios=(0.8, 0.1, 0.1), seed=5)
    p = build(raw, kcore=2, split="random", ratios=(0.8, 0.1, 0.1), seed=5)
    for part, label in (("train", TRAIN), ("valid", VALID), ("test", TEST)):
        sel = p.labels == label
        assert np.array_equal(getattr(ds, part), np.stack([p.users[sel], p.items[sel]], 1)), part
    assert np.array_equal(ds.kg, p.kg) and ds.n_entities == p.n_entities == 17
    assert len(ds.kg) == 3  # the repeated triple is kept once, by both
    assert ds.item_ids.tolist() == p.item_ids.tolist()
    assert ds.summary() == p.counts()


def test_temporal_split_in_the_training_builder():
    """Per user the newest interaction is test, the one before valid, whatever the file order."""
    users = np.array([0, 0, 0, 0, 1, 1, 1])
    items = np.array([0, 1, 2, 3, 0, 1, 2])
    times = np.array([40, 10, 30, 20, 5, 7, 6])
    raw = _raw(users, items, 2, 4)
    ds = build_rec_dataset(raw, split="temporal", ratios=(0.5, 0.25, 0.25), timestamps=times)
    assert sorted(map(tuple, ds.test.tolist())) == [(0, 0), (1, 1)]
    assert sorted(map(tuple, ds.valid.tolist())) == [(0, 2), (1, 2)]
    with pytest.raises(DataError, match="temporal needs timestamps"):
        build_rec_dataset(raw, split="temporal")

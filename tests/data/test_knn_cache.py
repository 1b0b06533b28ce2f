"""Feature kNN lists cached on disk (issue 13): the second store reads them instead of searching and
gets the same lists; changed features or k miss the entry; a corrupt or mismatched entry is
reported and rebuilt; the file is an npz read without pickle."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import slifmr.data.graph_store as gs
from slifmr.data import knn_cache
from slifmr.data.dataset import RecDataset
from slifmr.data.graph_store import GraphStore

N_ITEMS = 30


def dataset(seed: int = 0) -> RecDataset:
    rng = np.random.default_rng(seed)
    train = np.array([(u, (3 * u + j) % N_ITEMS) for u in range(10) for j in range(4)], dtype=np.int64)
    empty = np.zeros((0, 2), dtype=np.int64)
    mask = np.ones(N_ITEMS, dtype=bool)
    mask[4] = False
    return RecDataset(
        name="knn-cache", n_users=10, n_items=N_ITEMS, train=train, valid=empty, test=empty,
        user_ids=np.arange(10).astype(str), item_ids=np.arange(N_ITEMS).astype(str),
        features={"v": rng.random((N_ITEMS, 8)).astype(np.float32), "t": rng.random((N_ITEMS, 5)).astype(np.float32)},
        feature_masks={"v": mask, "t": np.ones(N_ITEMS, dtype=bool)},
    )


@pytest.fixture
def searches(monkeypatch):
    calls: list[int] = []
    real = gs.knn_graph
    monkeypatch.setattr(gs, "knn_graph", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    return calls


def lists(store: GraphStore, k: int = 4) -> list[tuple[torch.Tensor, ...]]:
    return [store.knn_lists(m, k) for m in store.modalities]


def same(a, b) -> bool:
    return all(torch.equal(x, y) for la, lb in zip(a, b) for x, y in zip(la, lb))


def test_second_store_reads_the_cache_and_gets_identical_lists(tmp_path, searches):
    first = lists(GraphStore(dataset(), cache_dir=tmp_path))
    assert len(searches) == 2 and len(list(tmp_path.glob("knn-*.npz"))) == 2
    second = lists(GraphStore(dataset(), cache_dir=tmp_path))
    assert len(searches) == 2  # no new search
    uncached = lists(GraphStore(dataset()))
    assert same(first, second) and same(second, uncached)
    assert not list(tmp_path.glob("*.tmp"))
    with np.load(next(tmp_path.glob("knn-*.npz")), allow_pickle=False) as z:  # plain arrays, no pickle
        assert {"meta", "rows", "cols", "vals"} <= set(z.files)


def test_changed_features_or_k_miss_the_entry(tmp_path, searches):
    lists(GraphStore(dataset(0), cache_dir=tmp_path))
    other = lists(GraphStore(dataset(1), cache_dir=tmp_path))  # other features
    assert len(searches) == 4 and same(other, lists(GraphStore(dataset(1))))
    lists(GraphStore(dataset(0), cache_dir=tmp_path), k=3)
    assert len(searches) == 6 + 2  # the uncached reference searched twice too
    ds = dataset(0)
    ds.feature_masks["v"][7] = False  # a mask change (e.g. modality noise) is a change of features
    GraphStore(ds, cache_dir=tmp_path).knn_lists("v", 4)
    assert len(searches) == 9


@pytest.mark.parametrize("damage", ["truncated", "other_k", "bad_ids"])
def test_corrupt_or_mismatched_entry_is_reported_and_rebuilt(tmp_path, searches, caplog, damage):
    reference = lists(GraphStore(dataset(), cache_dir=tmp_path))
    path = knn_cache.entry_path(tmp_path, "v", knn_cache.feature_digest(torch.as_tensor(dataset().features["v"]),
                                                                         torch.as_tensor(dataset().feature_masks["v"])),
                                4, "cpu")
    assert path.exists()
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:50])
    else:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        if damage == "other_k":
            arrays["meta"] = np.array(str(arrays["meta"]).replace('"k": 4', '"k": 5'))
        else:
            arrays["cols"] = arrays["cols"] + N_ITEMS
        np.savez(path, **arrays)
    with pytest.raises(knn_cache.CorruptCacheEntry, match=path.name):
        knn_cache.load(path, path.stem.split("-")[2], 4, N_ITEMS, "cpu")
    n = len(searches)
    with caplog.at_level(logging.WARNING):
        rebuilt = lists(GraphStore(dataset(), cache_dir=tmp_path))
    assert len(searches) == n + 1 and "rebuilding" in caplog.text and path.name in caplog.text
    assert same(rebuilt, reference)
    assert same(lists(GraphStore(dataset(), cache_dir=tmp_path)), reference) and len(searches) == n + 1

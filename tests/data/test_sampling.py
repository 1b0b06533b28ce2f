import numpy as np
import torch

from slifmr.data.sampling import BPRBatches, RankingBatches, csr, gather_rows


def test_bpr_batches_cover_each_interaction_once_per_epoch():
    train = np.array([[u, i] for u in range(30) for i in range(u % 7 + 1)])
    ds = BPRBatches(train, n_items=10, batch_size=16, seed=0)
    seen = torch.cat([torch.stack([b["users"], b["pos"]], 1) for b in (ds[i] for i in range(len(ds)))])
    assert len(seen) == len(train)
    assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, train.tolist()))
    b0 = ds[0]
    assert b0["neg"].min() >= 0 and b0["neg"].max() < 10
    # reproducible within an epoch, different across epochs
    assert torch.equal(BPRBatches(train, 10, 16, 0)[0]["neg"], b0["neg"])
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["users"], b0["users"])


def test_gather_rows_matches_loop():
    rng = np.random.default_rng(0)
    pairs = np.unique(rng.integers(0, [20, 50], size=(300, 2)), axis=0)
    indptr, idx = csr(pairs, 20)
    rows = np.array([3, 0, 19, 7])
    local, cols = gather_rows(indptr, idx, rows)
    expect = [(k, c) for k, r in enumerate(rows) for c in sorted(pairs[pairs[:, 0] == r, 1])]
    assert list(zip(local.tolist(), cols.tolist())) == expect


def test_ranking_batches_only_users_with_truth():
    known = np.array([[0, 1], [1, 2], [2, 3]])
    truth = np.array([[0, 4], [2, 0], [2, 1]])
    ds = RankingBatches(known, truth, n_users=4, batch_size=8)
    b = ds[0]
    assert b["users"].tolist() == [0, 2]
    assert list(zip(b["mask_rows"].tolist(), b["mask_cols"].tolist())) == [(0, 1), (1, 3)]
    assert list(zip(b["gt_rows"].tolist(), b["gt_cols"].tolist())) == [(0, 4), (1, 0), (1, 1)]

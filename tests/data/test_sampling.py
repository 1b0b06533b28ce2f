import numpy as np
import pytest
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


def _pairs(n: int = 103, n_users: int = 11, n_items: int = 17) -> np.ndarray:
    rng = np.random.default_rng(3)
    return np.stack([rng.integers(0, n_users, n), rng.integers(0, n_items, n)], axis=1)


def test_bpr_batches_on_the_cpu_are_the_seeded_cpu_draws():
    """On the CPU a batch is exactly what a CPU generator seeded by (seed, epoch) / (seed, epoch,
    batch) draws: the device-side sampler keeps CPU runs bit-identical to the host sampler's."""
    pairs, seed, epoch, bs = _pairs(), 7, 2, 20
    ds = BPRBatches(pairs, 17, bs, seed, device="cpu")
    ds.set_epoch(epoch)
    perm = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    for b in range(len(ds)):
        idx = perm[b * bs : (b + 1) * bs]
        g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 100_003 + b)
        batch = ds[b]
        assert torch.equal(batch["users"], torch.as_tensor(pairs[:, 0])[idx])
        assert torch.equal(batch["pos"], torch.as_tensor(pairs[:, 1])[idx])
        assert torch.equal(batch["neg"], torch.randint(0, 17, (len(idx),), generator=g))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bpr_batches_drawn_on_the_gpu_without_a_sync():
    pairs, dev = _pairs(), torch.device("cuda")
    single = BPRBatches(pairs, 17, 20, seed=5, device=dev)
    ranks = [BPRBatches(pairs, 17, 20, seed=5, rank=r, world_size=2, device=dev) for r in range(2)]
    again = BPRBatches(pairs, 17, 20, seed=5, device=dev)
    for ds in (single, *ranks, again):
        ds.set_epoch(1)
        ds._permutation()  # once per epoch
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        batches = [single[b] for b in range(len(single))]
        parts = [[ds[b] for b in range(len(single))] for ds in ranks]
        repeat = [again[b] for b in range(len(single))]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    seen = torch.cat([torch.stack([b["users"], b["pos"]], 1) for b in batches]).cpu()
    assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, pairs.tolist()))
    for b, whole in enumerate(batches):
        assert all(v.device.type == "cuda" for v in whole.values())
        assert 0 <= int(whole["neg"].min()) and int(whole["neg"].max()) < 17
        assert torch.equal(whole["neg"], repeat[b]["neg"]) and torch.equal(whole["users"], repeat[b]["users"])
        for key in ("users", "pos", "neg"):  # DDP: the ranks' slices make up the same global batch
            assert torch.equal(torch.cat([p[b][key] for p in parts]), whole[key])
        assert float(sum(p[b]["grad_scale"] for p in parts)) == pytest.approx(2.0)

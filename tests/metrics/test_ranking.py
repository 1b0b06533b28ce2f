"""Ranking metrics vs a brute-force pure-Python reference, a hand-computed case and DDP merging."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from slifmr.metrics import RankingMetrics, hits_from_topk, rank_topk

TOPK = (1, 3, 5, 10)


@pytest.fixture(params=["tie-repair", "int64-keys"])
def ranking_path(request, monkeypatch):
    """Both top-k paths of rank_topk on the CPU: the tie repair (the CPU's) and the exact int64
    keys (used off the CPU, where the repair's data-dependent rows would synchronise)."""
    import slifmr.metrics.ranking as ranking

    if request.param == "int64-keys":
        monkeypatch.setattr(ranking, "_use_keys", lambda s: s.dtype in (torch.float32, torch.float16, torch.bfloat16))
    return request.param


def reference(scores: np.ndarray, masked: list[set[int]], gt: list[set[int]], topk) -> dict:
    """Explicit loops: sort unmasked items by (-score, id), pad with masked ones, then metrics."""
    sums = {f"{n}@{k}": 0.0 for k in topk for n in RankingMetrics.NAMES}
    n_users = 0
    max_k = max(topk)
    for u in range(scores.shape[0]):
        if not gt[u]:
            continue
        n_users += 1
        free = sorted((i for i in range(scores.shape[1]) if i not in masked[u]),
                      key=lambda i: (-scores[u, i], i))
        ranked = (free + sorted(masked[u]))[:max_k]  # masked last, lowest id first
        for k in topk:
            hits = [ranked[r] in gt[u] for r in range(k)]
            dcg = sum(1.0 / math.log2(r + 2) for r in range(k) if hits[r])
            idcg = sum(1.0 / math.log2(r + 2) for r in range(min(k, len(gt[u]))))
            sums[f"recall@{k}"] += sum(hits) / len(gt[u])
            sums[f"ndcg@{k}"] += dcg / idcg
            sums[f"precision@{k}"] += sum(hits) / k
    return {name: torch.tensor(v / n_users, dtype=torch.float64) for name, v in sums.items()}


def reference_ranking(scores: np.ndarray, masked: list[set[int]], k: int) -> list[list[int]]:
    out = []
    for u in range(scores.shape[0]):
        free = sorted((i for i in range(scores.shape[1]) if i not in masked[u]),
                      key=lambda i: (-scores[u, i], i))
        out.append((free + sorted(masked[u]))[:k])
    return out


def random_case(rng: np.random.Generator, n_users: int, n_items: int, n_levels: int | None):
    """Scores (ties everywhere when n_levels is small), disjoint masked / ground-truth sets."""
    if n_levels is None:
        scores = rng.standard_normal((n_users, n_items)).astype(np.float32)
    else:
        scores = rng.integers(0, n_levels, size=(n_users, n_items)).astype(np.float32)
    masked, gt = [], []
    for _ in range(n_users):
        perm = rng.permutation(n_items)
        kind = rng.random()
        if kind < 0.15:  # almost everything masked: fewer unmasked items than k
            n_mask = int(rng.integers(n_items - 4, n_items))
        else:
            n_mask = int(rng.integers(0, n_items // 2))
        n_gt = 0 if kind > 0.85 else int(rng.integers(1, max(2, min(n_items - n_mask, 15))))
        n_gt = min(n_gt, n_items - n_mask)  # may be 0 -> user excluded
        masked.append(set(perm[:n_mask].tolist()))
        gt.append(set(perm[n_mask : n_mask + n_gt].tolist()))
    return scores, masked, gt


def pairs(sets: list[set[int]], start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row-in-chunk, item) int64 pairs for users start..stop-1, in shuffled order."""
    rows = [u - start for u in range(start, stop) for _ in sets[u]]
    cols = [i for u in range(start, stop) for i in sets[u]]
    perm = torch.randperm(len(rows))
    return (torch.tensor(rows, dtype=torch.long)[perm].reshape(-1),
            torch.tensor(cols, dtype=torch.long)[perm].reshape(-1))


def run_chunked(scores, masked, gt, topk, bounds, metric=None) -> RankingMetrics:
    metric = metric or RankingMetrics(topk)
    k = max(topk)
    for start, stop in zip(bounds[:-1], bounds[1:]):
        chunk = torch.from_numpy(scores[start:stop].copy())
        m_rows, m_cols = pairs(masked, start, stop)
        g_rows, g_cols = pairs(gt, start, stop)
        idx = rank_topk(chunk, m_rows, m_cols, k)
        hits, n_rel = hits_from_topk(idx, g_rows, g_cols, scores.shape[1])
        metric.update(hits, n_rel)
    return metric


def random_bounds(rng: np.random.Generator, n_users: int) -> list[int]:
    if n_users < 2:
        return [0, n_users]
    cuts = sorted(set(rng.integers(1, n_users, size=int(rng.integers(0, 5))).tolist()))
    return [0, *cuts, n_users]


@pytest.mark.parametrize("seed", range(40))
def test_matches_bruteforce(seed: int, ranking_path) -> None:
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    n_users = int(rng.integers(1, 30))
    n_items = int(rng.integers(12, 60))
    n_levels = [2, 3, 5, None][seed % 4]
    scores, masked, gt = random_case(rng, n_users, n_items, n_levels)
    if not any(gt):
        gt[0] = {next(i for i in range(n_items) if i not in masked[0])}
    expected = reference(scores, masked, gt, TOPK)
    for _ in range(3):  # results must not depend on how users are chunked
        got = run_chunked(scores, masked, gt, TOPK, random_bounds(rng, n_users)).compute()
        assert got.keys() == expected.keys()
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("k", [1, 4, 11])
def test_rank_topk_exact_order(seed: int, k: int, ranking_path) -> None:
    """The returned indices themselves follow (score desc, item asc), across the boundary."""
    rng = np.random.default_rng(100 + seed)
    n_users, n_items = 25, int(rng.integers(k + 1, 40))
    scores, masked, _ = random_case(rng, n_users, n_items, [2, 4, None][seed % 3])
    m_rows, m_cols = pairs(masked, 0, n_users)
    got = rank_topk(torch.from_numpy(scores.copy()), m_rows, m_cols, k)
    assert got.dtype == torch.long and got.shape == (n_users, k)
    assert got.tolist() == reference_ranking(scores, masked, k)


def test_rank_topk_k_equals_n_items_and_bad_k() -> None:
    scores = torch.tensor([[1.0, 3.0, 3.0, 0.0]])
    got = rank_topk(scores, torch.tensor([0]), torch.tensor([3]), 4)
    assert got.tolist() == [[1, 2, 0, 3]]
    with pytest.raises(ValueError):
        rank_topk(torch.zeros(1, 3), torch.empty(0, dtype=torch.long),
                  torch.empty(0, dtype=torch.long), 4)


def test_hand_computed(ranking_path) -> None:
    # 1 user, 5 items, item 4 masked (train) despite the top score.
    # Tie rule check first: items 1 and 3 both score 0.5 -> lower id (1) ranks first.
    scores = torch.tensor([[0.8, 0.5, 0.9, 0.5, 5.0]])
    idx = rank_topk(scores, torch.tensor([0]), torch.tensor([4]), 4)
    assert idx.tolist() == [[2, 0, 1, 3]]
    assert scores[0, 4] == float("-inf")  # masked in place
    # Now item 3 strictly above item 1: ranking 2 (0.9), 0 (0.8), 3 (0.5), 1 (0.4).
    # Ground truth {2, 3} -> hits at ranks 1 and 3 (1-based), n_relevant = 2.
    scores = torch.tensor([[0.8, 0.4, 0.9, 0.5, 5.0]])
    idx = rank_topk(scores, torch.tensor([0]), torch.tensor([4]), 4)
    assert idx.tolist() == [[2, 0, 3, 1]]
    hits, n_rel = hits_from_topk(idx, torch.tensor([0, 0]), torch.tensor([3, 2]), 5)
    assert hits.tolist() == [[True, False, True, False]] and n_rel.tolist() == [2]
    metric = RankingMetrics(topk=(1, 2, 3), prefix="test/")
    metric.update(hits, n_rel)
    got = metric.compute()
    idcg2 = 1 + 1 / math.log2(3)  # = 1.6309297535714575
    expected = {
        # @1: 1 hit of 1. recall 1/2, precision 1/1, DCG = 1/log2(2) = 1, IDCG = 1 -> 1.
        "test/recall@1": 0.5, "test/precision@1": 1.0, "test/ndcg@1": 1.0,
        # @2: still 1 hit. recall 1/2, precision 1/2, DCG = 1, IDCG = 1 + 1/log2(3) -> 0.6131472.
        "test/recall@2": 0.5, "test/precision@2": 0.5, "test/ndcg@2": 1 / idcg2,
        # @3: 2 hits. recall 2/2 = 1, precision 2/3, DCG = 1 + 1/log2(4) = 1.5,
        #     IDCG = 1 + 1/log2(3) (only 2 relevant) -> 1.5 / 1.6309297 = 0.9197207.
        "test/recall@3": 1.0, "test/precision@3": 2 / 3, "test/ndcg@3": 1.5 / idcg2,
    }
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(got[name], torch.tensor(value, dtype=torch.float64))
    f64 = torch.float64
    torch.testing.assert_close(got["test/ndcg@2"], torch.tensor(0.6131471927654584, dtype=f64))
    torch.testing.assert_close(got["test/ndcg@3"], torch.tensor(0.9197207891481876, dtype=f64))


def test_users_without_ground_truth_are_ignored() -> None:
    hits = torch.tensor([[True, False], [False, False], [False, True]])
    n_rel = torch.tensor([1, 0, 2])
    metric = RankingMetrics(topk=(2,))
    metric.update(hits, n_rel)
    assert metric.n_users.item() == 2
    expected = torch.tensor(0.75, dtype=torch.float64)  # (1/1 + 1/2) / 2 counted users
    torch.testing.assert_close(metric.compute()["recall@2"], expected)
    per_user = RankingMetrics.per_user(hits, n_rel, (2,))
    assert torch.isnan(per_user["recall@2"][1]) and per_user["recall@2"][0] == 1.0


def test_hits_without_ground_truth_pairs() -> None:
    idx = torch.tensor([[0, 1], [2, 3]])
    empty = torch.empty(0, dtype=torch.long)
    hits, n_rel = hits_from_topk(idx, empty, empty, 4)
    assert not hits.any() and n_rel.tolist() == [0, 0]


def test_state_merge_equals_single_instance() -> None:
    """Simulated DDP: sum-reduced states of two disjoint halves == one instance on all users."""
    rng = np.random.default_rng(7)
    scores, masked, gt = random_case(rng, 40, 30, 3)
    gt[0] = gt[0] or {next(i for i in range(30) if i not in masked[0])}
    full = run_chunked(scores, masked, gt, TOPK, [0, 40])
    half_a = run_chunked(scores[:17], masked[:17], gt[:17], TOPK, [0, 9, 17])
    half_b = run_chunked(scores[17:], masked[17:], gt[17:], TOPK, [0, 23])
    # (a) manual sum of states, as dist_reduce_fx="sum" does across ranks
    summed = {name: getattr(half_a, name) + getattr(half_b, name) for name in full._defaults}
    for name, value in summed.items():
        torch.testing.assert_close(value, getattr(full, name), rtol=1e-12, atol=0)
    # (b) torchmetrics' own merge
    half_a.merge_state(half_b)
    expected = full.compute()
    for name, value in half_a.compute().items():
        torch.testing.assert_close(value, expected[name], rtol=1e-12, atol=1e-12)
    assert all(fx == "sum" or fx is torch.sum or getattr(fx, "__name__", "") == "dim_zero_sum"
               for fx in full._reductions.values())


def test_rank_topk_many_tied_rows_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tie fix processed in several row blocks (incl. constant scores) stays exact."""
    import slifmr.metrics.ranking as ranking

    monkeypatch.setattr(ranking, "_TIE_BLOCK_ROWS", 3)
    rng = np.random.default_rng(3)
    scores, masked, _ = random_case(rng, 17, 20, 2)
    scores[:5] = 0.0  # constant rows: top-k is just the lowest unmasked ids
    m_rows, m_cols = pairs(masked, 0, 17)
    got = rank_topk(torch.from_numpy(scores.copy()), m_rows, m_cols, 6)
    assert got.tolist() == reference_ranking(scores, masked, 6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_rank_topk_other_dtypes(dtype: torch.dtype, ranking_path) -> None:
    """Exact tie handling also for half precision (tie keys are built in float32)."""
    rng = np.random.default_rng(11)
    scores, masked, _ = random_case(rng, 20, 3000, 3)  # > 2048 items: beyond fp16 integer range
    m_rows, m_cols = pairs(masked, 0, 20)
    got = rank_topk(torch.from_numpy(scores.copy()).to(dtype), m_rows, m_cols, 7)
    assert got.tolist() == reference_ranking(scores, masked, 7)


def test_int64_keys_order_signed_zeros_negatives_and_masked_items(ranking_path) -> None:
    """-0.0 ties +0.0 (lower item first), negatives and -inf (masked) rank below, in float order."""
    scores = torch.tensor([[-0.0, 0.0, -1.5, 2.0, -1e-30, -1.5, float("-inf"), 3.0e38]])
    got = rank_topk(scores, torch.tensor([0]), torch.tensor([7]), 8)
    assert got.tolist() == [[3, 0, 1, 4, 2, 5, 6, 7]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_ranking_pass_never_waits_on_the_host() -> None:
    rng = np.random.default_rng(5)
    scores, masked, gt = random_case(rng, 40, 300, 3)
    gt = [g or {next(i for i in range(300) if i not in m)} for g, m in zip(gt, masked)]
    expected = reference(scores, masked, gt, TOPK)
    metric = RankingMetrics(TOPK).cuda()
    m_rows, m_cols = (t.cuda() for t in pairs(masked, 0, 40))
    g_rows, g_cols = (t.cuda() for t in pairs(gt, 0, 40))
    chunk = torch.from_numpy(scores.copy()).cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        idx = rank_topk(chunk, m_rows, m_cols, max(TOPK))
        hits, n_rel = hits_from_topk(idx, g_rows, g_cols, 300)
        metric.update(hits, n_rel)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for name, value in metric.compute().items():
        torch.testing.assert_close(value.cpu(), expected[name], rtol=1e-12, atol=1e-12)

"""Degree-sensitive pruning (Eq. 6): exact counts, determinism, and who gets dropped."""

from __future__ import annotations

import math

import pytest
import torch

from slifmr.graphs.adjacency import bipartite_adjacency
from slifmr.graphs.pruning import degree_keep_prob, n_kept, prune_edges


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_degree_keep_prob_by_hand():
    # edges 0-1, 0-2, 1-2, 2-3: degrees 0:2, 1:2, 2:3, 3:1
    rows, cols = torch.tensor([0, 0, 1, 2]), torch.tensor([1, 2, 2, 3])
    p = degree_keep_prob(rows, cols, 4)
    expected = torch.tensor([1 / math.sqrt(2 * 2), 1 / math.sqrt(2 * 3), 1 / math.sqrt(2 * 3), 1 / math.sqrt(3 * 1)])
    torch.testing.assert_close(p, expected)
    torch.testing.assert_close(degree_keep_prob(rows, cols), expected)  # n_nodes inferred


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5, 0.77, 0.95])
def test_keeps_exact_count_without_duplicates(ratio):
    rows, cols = torch.randint(0, 50, (1001,)), torch.randint(50, 120, (1001,))
    keep = prune_edges(rows, cols, ratio, gen(3))
    assert keep.dtype == torch.int64
    assert keep.numel() == round((1 - ratio) * 1001) == n_kept(1001, ratio)
    assert keep.unique().numel() == keep.numel()
    assert (keep >= 0).all() and (keep < 1001).all()
    assert (keep[1:] > keep[:-1]).all()  # sorted


def test_ratio_zero_keeps_all_and_one_keeps_none():
    rows, cols = torch.randint(0, 10, (37,)), torch.randint(10, 20, (37,))
    assert torch.equal(prune_edges(rows, cols, 0.0, gen(0)), torch.arange(37))
    assert prune_edges(rows, cols, 1.0, gen(0)).numel() == 0
    with pytest.raises(ValueError):
        prune_edges(rows, cols, 1.5, gen(0))


def test_same_seed_same_result_different_seed_differs():
    rows, cols = torch.randint(0, 100, (5000,)), torch.randint(100, 300, (5000,))
    a = prune_edges(rows, cols, 0.4, gen(7))
    b = prune_edges(rows, cols, 0.4, gen(7))
    c = prune_edges(rows, cols, 0.4, gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # both the topk-of-kept and the topk-of-dropped branch are deterministic
    assert torch.equal(prune_edges(rows, cols, 0.8, gen(7)), prune_edges(rows, cols, 0.8, gen(7)))


def test_high_degree_edges_dropped_more_often():
    # star: centre 0 with 20 leaves (p = 1/sqrt(20)); chain 100-101-...-120 (p = 1/2, ends 1/sqrt(2))
    star = [(0, j) for j in range(1, 21)]
    chain = [(100 + j, 101 + j) for j in range(20)]
    rows = torch.tensor([r for r, _ in star + chain])
    cols = torch.tensor([c for _, c in star + chain])
    counts = torch.zeros(40)
    for seed in range(200):
        counts[prune_edges(rows, cols, 0.5, gen(seed))] += 1
    freq = counts / 200
    star_f, chain_f = freq[:20].mean().item(), freq[20:].mean().item()
    assert star_f + 0.2 < chain_f, (star_f, chain_f)  # measured 0.36 vs 0.64; uniform: equal


def test_sampling_is_proportional_to_weights():
    # keep 1 of 3 edges: the kept one is edge e with probability w_e / sum(w)
    rows, cols = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    w = torch.tensor([1.0, 2.0, 7.0])
    counts = torch.zeros(3)
    for seed in range(3000):
        counts[prune_edges(rows, cols, 2 / 3, gen(seed), weights=w)] += 1
    torch.testing.assert_close(counts / 3000, w / w.sum(), atol=0.03, rtol=0)


def test_zero_weight_edges_go_first():
    rows, cols = torch.arange(5), torch.arange(5, 10)
    w = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    for seed in range(20):
        assert prune_edges(rows, cols, 0.4, gen(seed), weights=w).tolist() == [1, 2, 4]


def test_bipartite_pruning_keeps_pairs_symmetric():
    users = torch.tensor([0, 0, 0, 1, 2, 2])
    items = torch.tensor([0, 1, 2, 0, 1, 2])
    keep = prune_edges(users, items + 3, 0.5, gen(1))  # each interaction once, one node space
    a = bipartite_adjacency(users[keep], items[keep], 3, 3).to_dense()
    assert torch.equal(a, a.T)
    assert a.sum() == 2 * 3

"""Self-loop graph (Eq. 16-17) and graph comparison measures, on hand cases."""

from __future__ import annotations

import math

import torch

from slifmr.graphs.similarity import degree_gini, edge_jaccard, edge_overlap


def sp(edges, n, values=None):
    idx = torch.tensor(edges, dtype=torch.long).reshape(-1, 2).T
    v = torch.ones(idx.shape[1]) if values is None else torch.tensor(values)
    return torch.sparse_coo_tensor(idx, v, (n, n), check_invariants=True).coalesce()


def test_edge_jaccard_and_overlap_by_hand():
    a = sp([(0, 1), (1, 2), (2, 0), (3, 0)], 4, [1.0, 1.0, 1.0, 0.0])  # (3, 0) is an explicit zero
    b = sp([(0, 1), (2, 0), (2, 1), (3, 3)], 4)
    # common {(0,1), (2,0)} = 2; union = 3 + 4 - 2 = 5
    assert edge_jaccard(a, b) == 2 / 5
    assert edge_jaccard(b, a) == 2 / 5
    assert edge_overlap(a, b) == 2 / 3
    assert edge_overlap(b, a) == 2 / 4
    assert edge_jaccard(a, a) == 1.0
    empty = sp([], 4)
    assert edge_jaccard(a, empty) == 0.0 and edge_jaccard(empty, empty) == 1.0
    assert edge_overlap(a, empty) == 0.0


def test_degree_gini_by_hand():
    # out-degrees [1, 2, 3, 4]: G = sum (2i - n - 1) d_i / (n sum d) = (-3 - 2 + 3 + 12) / 40 = 0.25
    edges = [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2), (3, 0), (3, 1), (3, 2), (3, 3)]
    assert math.isclose(degree_gini(sp(edges, 4), mode="out"), 0.25)
    # star: in-degrees [3, 0, 0, 0] -> G = 3/4 = (n-1)/n, the maximum
    star = sp([(1, 0), (2, 0), (3, 0)], 4)
    assert math.isclose(degree_gini(star), 0.75)
    assert math.isclose(degree_gini(star, mode="out"), (2 * 2 - 5 + 2 * 3 - 5 + 2 * 4 - 5) / 12)  # [0,1,1,1]
    # a directed cycle: all degrees equal -> 0
    assert degree_gini(sp([(0, 1), (1, 2), (2, 3), (3, 0)], 4)) == 0.0
    assert degree_gini(sp([], 4)) == 0.0



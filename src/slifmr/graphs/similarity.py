"""Measures to compare graphs between self-loop refreshes (drift diagnostics).

Edge sets: the edges of a sparse matrix are the stored (coalesced) indices whose value is not
0; explicit zeros are not edges.
"""

from __future__ import annotations

import torch
from torch import Tensor



@torch.no_grad()
def _edge_keys(adj: Tensor) -> Tensor:
    """Sorted unique int64 keys ``row * n_cols + col`` of the non-zero entries of ``adj``."""
    if adj.layout != torch.sparse_coo:
        adj = adj.to_sparse_coo()
    adj = adj.coalesce()
    idx, val = adj.indices(), adj.values()
    idx = idx[:, val != 0]
    return idx[0] * adj.shape[1] + idx[1]  # coalesced: already sorted and unique


def _n_common(ka: Tensor, kb: Tensor) -> int:
    if ka.numel() == 0 or kb.numel() == 0:
        return 0
    return int(torch.isin(ka, kb.to(ka.device), assume_unique=True).sum())


def edge_jaccard(a: Tensor, b: Tensor) -> float:
    """``|E_a & E_b| / |E_a | E_b|`` of two sparse graphs of the same shape (1.0 if both are empty)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    ka, kb = _edge_keys(a), _edge_keys(b)
    common = _n_common(ka, kb)
    union = ka.numel() + kb.numel() - common
    return 1.0 if union == 0 else common / union


def edge_overlap(a: Tensor, b: Tensor) -> float:
    """``|E_a & E_b| / |E_a|``: the share of ``a``'s edges also in ``b`` (1.0 if ``a`` is empty)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    ka, kb = _edge_keys(a), _edge_keys(b)
    return 1.0 if ka.numel() == 0 else _n_common(ka, kb) / ka.numel()


def degree_gini(adj: Tensor, mode: str = "in") -> float:
    """Gini coefficient of the node degrees (edge counts, values ignored) of a sparse graph.

    Args:
        adj: (n, n) sparse.
        mode: ``"in"`` (default: column counts; the hubness of a kNN graph, whose out-degree
            is constant), ``"out"`` (row counts) or ``"total"`` (both). Equal for a symmetric graph.

    Returns:
        Gini in [0, (n-1)/n] over all n nodes (isolated ones count as degree 0); 0.0 for a graph
        without edges. ``G = sum_i (2i - n - 1) d_(i) / (n sum d)`` with degrees sorted ascending.
    """
    if adj.layout != torch.sparse_coo:
        adj = adj.to_sparse_coo()
    adj = adj.coalesce()
    idx = adj.indices()[:, adj.values() != 0]
    n = adj.shape[0]
    if mode == "in":
        deg = torch.bincount(idx[1], minlength=adj.shape[1])
    elif mode == "out":
        deg = torch.bincount(idx[0], minlength=n)
    elif mode == "total":
        deg = torch.bincount(idx[0], minlength=n) + torch.bincount(idx[1], minlength=n)
    else:
        raise ValueError(f"mode must be 'in', 'out' or 'total', got {mode!r}")
    deg = torch.sort(deg.to(torch.float64)).values
    m = deg.numel()
    total = float(deg.sum())
    if m == 0 or total == 0:
        return 0.0
    i = torch.arange(1, m + 1, dtype=torch.float64, device=deg.device)
    return float(((2 * i - m - 1) * deg).sum() / (m * total))

"""How the self-loop graph G^n enters A, S and reads back out (Eq. 16-18): pure graph maths.

G^n is the raw top-N cosine graph over fused item embeddings (non-positive cosines dropped).
``a_block`` decides the values G's edges carry when injected (SPEC "Self-loop graph enhancement"):

* ``cosine`` (default): its raw cosines, as Eq. 18 writes ``A^n = [[0, R], [R^T, G^n]]``; the
  sum (A^n, or S^0 + G^n) is normalised once, so G carries about ``N c / (d_i + N c)`` of an
  item row (c: mean cosine, d_i: the item's degree).
* ``binary``: every G edge is 1 (as every R entry is).
* ``normalized``: the old build: G Laplacian-normalised on its own (row sums ~1) before injection,
  and in S the already normalised S^0 plus that, normalised again. G then carries a few percent of
  an item row, which is why it is not the default any more.
"""

from __future__ import annotations

import torch
from torch import Tensor

from slifmr.graphs.adjacency import _coo, bipartite_adjacency, sym_normalize

A_BLOCKS = ("cosine", "binary", "normalized")


def check_a_block(a_block: str) -> str:
    if a_block not in A_BLOCKS:
        raise ValueError(f"model.self_loop.a_block must be one of {A_BLOCKS}, got '{a_block}'")
    return a_block


def item_block(g: Tensor, a_block: str = "cosine") -> Tensor:
    """(I, I) G^n's values as injected: raw cosines, ones, or ``D^-1/2 G D^-1/2``."""
    check_a_block(a_block)
    g = g.coalesce()
    if a_block == "cosine":
        return g
    if a_block == "binary":
        return _coo(g.indices(), torch.ones_like(g.values()), tuple(g.shape), coalesced=True)
    return sym_normalize(g)


def interaction_graph(users: Tensor, items: Tensor, n_users: int, n_items: int, g: Tensor | None = None,
                      a_block: str = "cosine") -> Tensor:
    """(U+I, U+I) ``D^-1/2 A^n D^-1/2`` with ``A^n = [[0, R], [R^T, block(G)]]`` (Eq. 7, 18);
    ``g`` None: the plain A of Eq. 1."""
    block = None if g is None else item_block(g, a_block)
    return sym_normalize(bipartite_adjacency(users, items, n_users, n_items, item_item=block))


def feature_graph(s0: Tensor, g: Tensor | None = None, a_block: str = "cosine") -> Tensor:
    """(I, I) one modality's S^n (Eq. 4, 18): ``D^-1/2 (S^0 + block(G)) D^-1/2`` with S^0 the raw
    cosine kNN graph; ``normalized``: ``norm(norm(S^0) + norm(G))`` (the old build)."""
    if g is None:
        return sym_normalize(s0)
    if check_a_block(a_block) == "normalized":
        s0 = sym_normalize(s0)
    return sym_normalize((s0.coalesce() + item_block(g, a_block).to(s0.dtype)).coalesce())


def item_block_share(adj: Tensor, n_users: int) -> Tensor:
    """(I,) per item row of a (normalised) bipartite graph, the share of its weight that lies in
    the item-item block (what G carries); rows with no weight give NaN (no row, no share)."""
    adj = adj.coalesce()
    rows, cols = adj.indices()
    vals = adj.values().abs()
    n_items = adj.shape[0] - n_users
    is_item_row = rows >= n_users
    r = rows[is_item_row] - n_users
    v = vals[is_item_row]
    total = torch.zeros(n_items, dtype=v.dtype, device=v.device).index_add(0, r, v)
    inner = torch.zeros_like(total).index_add(0, r, v * (cols[is_item_row] >= n_users).to(v.dtype))
    return torch.where(total > 0, inner / total.clamp_min(torch.finfo(total.dtype).tiny),
                       torch.full_like(total, float("nan")))

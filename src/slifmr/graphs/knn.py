"""Cosine kNN item graphs over feature rows (Eq. 2-4), computed in row chunks.

Memory is O(chunk_size x n): one chunk of similarity rows at a time, never an (n, n) matrix.

Decisions (SPEC "Graphs built by the DataModule", "Engineering notes"):

* Self is excluded explicitly (FREEDOM's code keeps each item as its own first neighbour).
* Rows with ``mask == False`` and rows whose norm is 0 are *missing*: they get no edges, in
  either direction (a zero row is never "similar to everything").
* Cosine is computed as ``(x_i . x_j) / ||x_i|| / ||x_j||`` (raw dot products, then two
  element-wise divisions), which for integer-valued features gives bit-identical values for
  identical rows, so ties are real ties and the result does not depend on ``chunk_size``.
* Tie rule: within a row, neighbours are ordered by similarity descending, equal similarities
  by column ascending; the k-th place is filled by the lowest column index among equals.
"""

from __future__ import annotations

import torch
from torch import Tensor

from slifmr.graphs.adjacency import _coo, sym_normalize

_EPS = 1e-12
_TIE_GROUP = 256  # rows whose k-th place is tied, resolved this many at a time


def _valid_rows(x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """(norms (n,), valid (n,) bool): valid = mask & norm > 0 & row finite."""
    norms = x.pow(2).sum(1).sqrt()
    valid = (norms > 0) & torch.isfinite(norms)
    if mask is not None:
        mask = mask.reshape(-1).to(device=x.device, dtype=torch.bool)
        if mask.numel() != x.shape[0]:
            raise ValueError(f"mask has {mask.numel()} entries for {x.shape[0]} rows")
        valid &= mask
    return norms.clamp_min(_EPS), valid


def _order_rows(cols: Tensor, vals: Tensor) -> tuple[Tensor, Tensor]:
    """Sort each row of (c, k) by value descending, ties by column ascending."""
    cols, perm = torch.sort(cols, dim=1, stable=True)
    vals = torch.gather(vals, 1, perm)
    vals, perm = torch.sort(vals, dim=1, descending=True, stable=True)
    cols = torch.gather(cols, 1, perm)
    return cols, vals


def knn_graph(
    x: Tensor, k: int, mask: Tensor | None = None, chunk_size: int = 1024
) -> tuple[Tensor, Tensor, Tensor]:
    """Cosine top-k neighbours of every row of ``x``.

    Args:
        x: (n, f) float features (kept in their dtype; use float32 or float64).
        k: neighbours per row (>= 0). Rows with fewer than ``k`` valid candidates get only
            the valid ones.
        mask: optional (n,) bool, False = item missing (no edges in or out).
        chunk_size: rows per similarity block; memory ~ chunk_size x n values.

    Returns:
        ``(rows, cols, values)``: (E,) int64, (E,) int64, (E,) x.dtype, ordered by row, then
        value descending, then column ascending. Deterministic and independent of
        ``chunk_size``. Values are raw cosines (may be negative). No self-loops. No gradient
        (``x`` is detached).
    """
    if x.dim() != 2:
        raise ValueError(f"x must be (n, f), got {tuple(x.shape)}")
    if k < 0 or chunk_size < 1:
        raise ValueError(f"k must be >= 0 and chunk_size >= 1, got k={k}, chunk_size={chunk_size}")
    x = x.detach()
    if not x.is_floating_point():
        x = x.float()
    n, device = x.shape[0], x.device
    empty = (
        torch.zeros(0, dtype=torch.long, device=device),
        torch.zeros(0, dtype=torch.long, device=device),
        torch.zeros(0, dtype=x.dtype, device=device),
    )
    kk = min(k, n)
    if kk == 0 or n == 0:
        return empty
    norms, valid = _valid_rows(x, mask)
    invalid_idx = (~valid).nonzero().squeeze(1)
    kq = min(kk + 1, n)  # one extra place tells whether the k-th place is tied
    neg_inf = float("-inf")
    out_r, out_c, out_v = [], [], []
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        c = stop - start
        sim = x[start:stop] @ x.T  # (c, n)
        sim.div_(norms[start:stop, None]).div_(norms[None, :])
        if invalid_idx.numel():
            sim.index_fill_(1, invalid_idx, neg_inf)  # missing items are nobody's neighbour
            bad = invalid_idx[(invalid_idx >= start) & (invalid_idx < stop)] - start
            sim.index_fill_(0, bad, neg_inf)  # ... and have no neighbours
        local = torch.arange(c, device=device)
        sim[local, local + start] = neg_inf  # no self-loops
        vals, cols = torch.topk(sim, kq, dim=1, largest=True, sorted=True)
        thr = vals[:, kk - 1]  # the k-th value
        if kq > kk:
            amb = torch.isfinite(thr) & (vals[:, kk] == thr)
        else:
            amb = torch.zeros_like(thr, dtype=torch.bool)
        vals, cols = vals[:, :kk], cols[:, :kk]
        # topk picks an arbitrary subset of the columns tied at the k-th value: redo those rows
        amb_rows = amb.nonzero().squeeze(1)
        for a in range(0, amb_rows.numel(), _TIE_GROUP):  # bounded int32 cumsum temporaries
            ar = amb_rows[a : a + _TIE_GROUP]
            s, t = sim[ar], thr[ar, None]
            n_above = (vals[ar] > t).sum(1)
            eq = s == t
            rank = eq.cumsum(1, dtype=torch.int32)
            first = rank <= (kk - n_above).to(torch.int32)[:, None]  # lowest tied columns
            sel = (s > t) | (eq & first)  # exactly kk per row
            sel_cols = sel.nonzero()[:, 1].view(-1, kk)
            cols[ar] = sel_cols
            vals[ar] = torch.gather(s, 1, sel_cols)
        cols, vals = _order_rows(cols, vals)
        keep = torch.isfinite(vals)
        rows = (local + start)[:, None].expand(c, kk)
        out_r.append(torch.masked_select(rows, keep))  # (masked_select: much faster than
        out_c.append(torch.masked_select(cols, keep))  # boolean indexing on small CPU tensors)
        out_v.append(torch.masked_select(vals, keep))
    return torch.cat(out_r), torch.cat(out_c), torch.cat(out_v)


def _symmetric_max(rows: Tensor, cols: Tensor, vals: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """Edges of ``max(A, A^T)`` (union of both directions, max value where both exist)."""
    r = torch.cat([rows, cols])
    c = torch.cat([cols, rows])
    v = torch.cat([vals, vals])
    keys, inv = torch.unique(r * n + c, return_inverse=True)
    out = torch.full((keys.numel(),), float("-inf"), dtype=vals.dtype, device=vals.device)
    out = out.scatter_reduce(0, inv, v, reduce="amax", include_self=True)
    return keys // n, keys % n, out


def knn_adjacency(
    x: Tensor,
    k: int,
    mask: Tensor | None = None,
    chunk_size: int = 1024,
    symmetric: bool = False,
    weighted: bool = True,
) -> Tensor:
    """The (un-normalised) kNN graph ``S~`` of Eq. 3 as a sparse matrix.

    Args:
        x, k, mask, chunk_size: as in :func:`knn_graph`.
        symmetric: False (default, FREEDOM/LATTICE): directed, row ``i`` holds ``i``'s k
            neighbours. True: ``max(A, A^T)``.
        weighted: True (default, Eq. 3 / LATTICE): edge value = cosine clamped at 0; edges whose
            clamped value is 0 (non-positive cosine, only picked when a row has fewer than k
            positive candidates) are dropped. False (FREEDOM): every kNN edge has value 1.

    Returns:
        (n, n) coalesced COO, no self-loops, missing rows/cols empty. Normalise with
        :func:`laplacian_normalize`.
    """
    return knn_lists_to_adjacency(*knn_graph(x, k, mask, chunk_size), x.shape[0], symmetric, weighted)


def knn_lists_to_adjacency(rows: Tensor, cols: Tensor, vals: Tensor, n: int, symmetric: bool = False,
                           weighted: bool = True) -> Tensor:
    """:func:`knn_adjacency` from :func:`knn_graph`'s (rows, cols, cosines), so one kNN search
    can serve both the weighted (SLIF-MR) and the unweighted (FREEDOM) graph."""
    if weighted:
        vals = vals.clamp_min(0)
        keep = vals > 0
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
    else:
        vals = torch.ones_like(vals)
    if symmetric:
        rows, cols, vals = _symmetric_max(rows, cols, vals, n)
    return _coo(torch.stack([rows, cols]), vals, (n, n))


def laplacian_normalize(adj: Tensor) -> Tensor:
    """``D^-1/2 A D^-1/2`` (Eq. 4) with ``D`` = row sums, applied on both sides.

    This is the LATTICE/FREEDOM convention for a *directed* kNN graph too: the degree of node
    ``i`` is the sum of its own row (its out-neighbours' similarities, or k for an unweighted
    graph), used for the left factor of row ``i`` and the right factor of column ``i``. A row
    with zero sum (missing item) scales to 0 without NaN. Same function as
    :func:`slifmr.graphs.adjacency.sym_normalize`.

    Args:
        adj: (n, n) sparse COO.

    Returns:
        (n, n) coalesced COO with ``adj``'s sparsity pattern.
    """
    return sym_normalize(adj)

"""Graphs rebuilt from generated (denoised) rows, as DiffMM and DiffKG do once per epoch.

Pure functions, all sparse: a generated row block is at most (chunk, n) dense and only its top-k
entries leave the chunk, so no dense |U| x |I| or |E| x |E| matrix is ever built.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from slifmr.graphs.adjacency import bipartite_adjacency, sym_normalize


class RowMatrix:
    """A binary (n_rows, n_cols) matrix kept as CSR indices, handing out dense row blocks."""

    def __init__(self, rows: Tensor, cols: Tensor, n_rows: int, n_cols: int):
        key = torch.unique(rows.long() * n_cols + cols.long())  # sorted, duplicates merged
        r, c = key // n_cols, key % n_cols
        self.shape = (int(n_rows), int(n_cols))
        self.crow = torch.zeros(n_rows + 1, dtype=torch.long, device=key.device)
        self.crow[1:] = torch.cumsum(torch.bincount(r, minlength=n_rows), 0)
        self.col = c
        self.keys = key  # sorted row * n_cols + col, for membership tests

    def to(self, device: torch.device | str) -> "RowMatrix":
        out = object.__new__(RowMatrix)
        out.shape, out.crow, out.col, out.keys = self.shape, self.crow.to(device), self.col.to(device), \
            self.keys.to(device)
        return out

    def dense(self, rows: Tensor) -> Tensor:
        """(B, n_cols) float rows ``rows`` (B,), 1 at the stored entries."""
        start, end = self.crow[rows], self.crow[rows + 1]
        counts = end - start
        which = torch.repeat_interleave(torch.arange(rows.numel(), device=rows.device), counts)
        offset = torch.arange(int(counts.sum()), device=rows.device) - \
            torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        cols = self.col[start[which] + offset]
        out = torch.zeros(rows.numel(), self.shape[1], device=rows.device)
        out[which, cols] = 1.0
        return out

    def contains(self, rows: Tensor, cols: Tensor) -> Tensor:
        """(m,) bool: is ``(rows[j], cols[j])`` a stored entry?"""
        key = rows.long() * self.shape[1] + cols.long()
        if self.keys.numel() == 0:
            return torch.zeros_like(key, dtype=torch.bool)
        pos = torch.searchsorted(self.keys, key).clamp_max(self.keys.numel() - 1)
        return self.keys[pos] == key


def topk_edges(generate: Callable[[Tensor], Tensor], n_rows: int, k: int, chunk: int,
               device: torch.device | str) -> tuple[Tensor, Tensor]:
    """``(rows, cols)`` of the ``k`` largest entries of every generated row, built ``chunk`` rows
    at a time: ``generate(rows (B,)) -> (B, n)`` scores. Returns (n_rows * k,) each."""
    out_r, out_c = [], []
    for start in range(0, n_rows, chunk):  # a loop over row chunks, outside any training step
        rows = torch.arange(start, min(start + chunk, n_rows), device=device)
        cols = torch.topk(generate(rows), k, dim=1).indices  # (B, k)
        out_r.append(rows.repeat_interleave(k))
        out_c.append(cols.reshape(-1))
    return torch.cat(out_r), torch.cat(out_c)


def normalized_bipartite_with_self_loops(users: Tensor, items: Tensor, n_users: int, n_items: int) -> Tensor:
    """``D^-1/2 (A + I) D^-1/2`` of the bipartite graph (users first): the releases' ``makeTorchAdj``
    / ``buildUIMatrix`` (binary interactions plus the identity). (U+I, U+I) coalesced COO."""
    adj = bipartite_adjacency(users, items, n_users, n_items)
    n = n_users + n_items
    eye = torch.arange(n, device=adj.device)
    loops = torch.sparse_coo_tensor(torch.stack([eye, eye]), torch.ones(n, device=adj.device), (n, n),
                                    check_invariants=False)
    return sym_normalize((adj + loops).coalesce())


def drop_entries(adj: Tensor, keep_rate: float) -> Tensor:
    """Keep each stored entry with probability ``keep_rate`` and scale the kept ones by
    ``1 / keep_rate`` (the releases' ``SpAdjDropEdge``); ``keep_rate = 1`` returns ``adj``."""
    if not 0.0 < keep_rate <= 1.0:
        raise ValueError(f"keep_rate must lie in (0, 1], got {keep_rate}")
    if keep_rate == 1.0:
        return adj
    adj = adj.coalesce()
    keep = torch.rand(adj.values().numel(), device=adj.device) < keep_rate
    return torch.sparse_coo_tensor(adj.indices()[:, keep], adj.values()[keep] / keep_rate, adj.shape,
                                   is_coalesced=True, check_invariants=False)

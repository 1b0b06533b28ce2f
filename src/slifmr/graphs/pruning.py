"""Degree-sensitive edge pruning (Eq. 6).

Every edge ``e = (m, n)`` has keep weight ``p_e = 1 / (sqrt(d_m) sqrt(d_n))``; each epoch keeps
``round((1 - ratio) * |E|)`` edges sampled *without replacement* with probability proportional
to ``p_e`` (successive sampling), so edges between popular nodes are dropped more often.

Sampling uses the Gumbel-top-k trick: ``key_e = log p_e + G_e``, ``G_e = -log(-log U_e)``, and
the edges with the largest keys are kept. This is exactly successive sampling without
replacement, fully vectorised, with no limit on the number of edges (``torch.multinomial``
stops at 2^24 categories). It is computed in the equivalent exponential-key form
``log(U_e) / p_e`` (Efraimidis-Spirakis), which sorts the edges in the same order for the same
``U`` with one logarithm instead of two.

How to pass the graphs:

* Interaction graph: prune each undirected interaction **once**, on the (user, item) pairs,
  with ``rows = users`` and ``cols = items + n_users`` (one node space), then build the
  symmetric adjacency from the kept pairs (:func:`slifmr.graphs.adjacency.bipartite_adjacency`).
  Passing both directions would count every degree twice and could keep ``(u, i)`` but
  drop ``(i, u)``.
* Knowledge graph: prune the original triples ``(h, r, t)`` with ``rows = h, cols = t``
  before adding inverse relations, so a triple and its inverse are kept or dropped together.
"""

from __future__ import annotations

import torch
from torch import Tensor


def degree_keep_prob(rows: Tensor, cols: Tensor, n_nodes: int | None = None) -> Tensor:
    """Keep weights ``p_e = 1 / (sqrt(d_m) sqrt(d_n))`` (Eq. 6).

    Args:
        rows, cols: (E,) int64 endpoints of each edge, in one node space ``[0, n_nodes)``.
        n_nodes: number of nodes (default ``max id + 1``).

    Returns:
        (E,) float32 weights in (0, 1]. A node's degree is the number of edges in the list
        that touch it (a self-loop counts twice); list each undirected edge once.
    """
    rows = rows.reshape(-1).long()
    cols = cols.reshape(-1).long()
    if rows.shape != cols.shape:
        raise ValueError(f"rows {tuple(rows.shape)} and cols {tuple(cols.shape)} differ in length")
    if rows.numel() == 0:
        return torch.zeros(0, dtype=torch.float32, device=rows.device)
    if n_nodes is None:
        n_nodes = int(torch.maximum(rows.max(), cols.max())) + 1
    deg = torch.bincount(rows, minlength=n_nodes) + torch.bincount(cols, minlength=n_nodes)
    d = deg.to(torch.float32)
    return (d[rows] * d[cols]).rsqrt()


def check_prune_ratio(ratio: float, name: str = "prune_ratio") -> float:
    """``ratio`` as a float if it lies in [0, 1) (1 would drop every edge), else a ValueError
    naming ``name``: the one range check of every model-owned pruning ratio."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= float(ratio) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {ratio!r}")
    return float(ratio)


def n_kept(n_edges: int, ratio: float) -> int:
    """Number of edges :func:`prune_edges` keeps: ``round((1 - ratio) * n_edges)``."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"prune ratio must be in [0, 1], got {ratio}")
    return int(round((1.0 - ratio) * n_edges))


def prune_edges(
    rows: Tensor,
    cols: Tensor,
    ratio: float,
    generator: torch.Generator,
    weights: Tensor | None = None,
    n_nodes: int | None = None,
) -> Tensor:
    """Indices of the edges kept by degree-sensitive pruning.

    Args:
        rows, cols: (E,) int64 endpoints (see the module docstring for how to pass the
            bipartite graph and the KG).
        ratio: fraction of edges to drop, in [0, 1]; 0 keeps every edge.
        generator: random source; the same generator state gives the same result. Random
            numbers are drawn on the generator's device and moved to ``rows``' device.
        weights: optional (E,) non-negative keep weights replacing :func:`degree_keep_prob`.
            Zero-weight edges are kept only when too few positive ones remain.
        n_nodes: passed to :func:`degree_keep_prob`.

    Returns:
        (n_kept,) int64 indices into the edge list, sorted ascending, no duplicates, with
        ``n_kept = round((1 - ratio) * E)``.
    """
    rows = rows.reshape(-1)
    n_edges = rows.numel()
    keep = n_kept(n_edges, ratio)
    device = rows.device
    if keep >= n_edges:
        return torch.arange(n_edges, device=device)
    if keep == 0:
        return torch.zeros(0, dtype=torch.long, device=device)
    p = degree_keep_prob(rows, cols, n_nodes) if weights is None else weights.reshape(-1).to(device)
    if p.numel() != n_edges:
        raise ValueError(f"weights has {p.numel()} entries for {n_edges} edges")
    # Gumbel-top-k in its exponential-key form: log(U) / p orders the edges exactly as
    # log(p) - log(-log(U)) does (same U), with one log instead of two; U in (0, 1].
    u = 1.0 - torch.rand(n_edges, generator=generator, device=generator.device, dtype=torch.float32)
    p = p.to(device=device, dtype=torch.float32)
    keys = u.to(device).log_().div_(p)  # <= 0; p == 0 gives -inf, or NaN when U == 1
    keys = torch.where(p > 0, keys, torch.full_like(keys, float("-inf")))
    mask = torch.zeros(n_edges, dtype=torch.bool, device=device)
    if keep <= n_edges - keep:
        mask[torch.topk(keys, keep, largest=True, sorted=False).indices] = True
    else:  # drop the smallest keys instead (a smaller topk)
        mask.fill_(True)
        mask[torch.topk(keys, n_edges - keep, largest=False, sorted=False).indices] = False
    return mask.nonzero().squeeze(1)

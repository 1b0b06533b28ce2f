"""Knowledge-graph helpers (Eq. 10-12): inverse relations, per-head softmax, propagation.

``kg_propagate`` is a custom autograd function: ``torch.sparse.mm`` with a COO operand whose
values require grad computes its values' gradient as ``(grad @ x^T).sparse_mask(A)``, i.e. a
*dense* (n_entities x n_entities) matrix (160 GB for 200k entities). Here the forward is one
sparse matmul with the weights detached, and the backward computes
``grad_x = A^T @ grad`` (one sparse matmul) and ``grad_w[e] = grad[h_e] . x[t_e]`` in chunks
of edges, so no |E| x d tensor is kept between forward and backward.
"""

from __future__ import annotations

import torch
from torch import Tensor


def add_inverse(triples: Tensor, n_relations: int) -> Tensor:
    """Append the inverse of every triple.

    Args:
        triples: (m, 3) int64 ``(head, relation, tail)`` with relations in ``[0, n_relations)``.
        n_relations: number of original relations R.

    Returns:
        (2m, 3): the input rows, then ``(t, r + R, h)`` for each input row in the same order.
    """
    if triples.dim() != 2 or triples.shape[1] != 3:
        raise ValueError(f"triples must be (m, 3), got {tuple(triples.shape)}")
    inverse = torch.stack([triples[:, 2], triples[:, 1] + n_relations, triples[:, 0]], dim=1)
    return torch.cat([triples, inverse], dim=0)


def segment_softmax(scores: Tensor, segment: Tensor, n_segments: int) -> Tensor:
    """Softmax of edge scores within each segment (e.g. the triples of one head entity, Eq. 12).

    Numerically stable (the per-segment max, detached, is subtracted; softmax is invariant to
    it), vectorised, differentiable in ``scores``.

    Args:
        scores: (E,) or (E, H) float scores (H independent heads, each normalised on its own).
        segment: (E,) int64 segment id of each edge, in ``[0, n_segments)``; need not be sorted.
        n_segments: number of segments.

    Returns:
        Same shape as ``scores``; entries of each non-empty segment sum to 1. A segment whose
        scores are all ``-inf`` gives zeros (not NaN).
    """
    segment = segment.reshape(-1).long()
    if scores.shape[0] != segment.numel():
        raise ValueError(f"{scores.shape[0]} scores for {segment.numel()} segment ids")
    if scores.numel() == 0:
        return scores.clone()
    idx = segment.view(-1, *([1] * (scores.dim() - 1))).expand_as(scores)
    shape = (n_segments, *scores.shape[1:])
    seg_max = torch.full(shape, float("-inf"), dtype=scores.dtype, device=scores.device)
    seg_max = seg_max.scatter_reduce(0, idx, scores.detach(), reduce="amax", include_self=True)
    seg_max = torch.where(torch.isfinite(seg_max), seg_max, torch.zeros_like(seg_max))
    e = (scores - seg_max[segment]).exp()
    denom = torch.zeros_like(seg_max).index_add(0, segment, e)
    return e / denom[segment].clamp_min(torch.finfo(scores.dtype).tiny)


class _KGPropagate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, heads: Tensor, tails: Tensor, weights: Tensor, x: Tensor, n_entities: int, chunk: int):
        size = (n_entities, x.shape[0])
        a = torch.sparse_coo_tensor(torch.stack([heads, tails]), weights.detach(), size, check_invariants=False)
        out = torch.sparse.mm(a, x.detach())
        ctx.save_for_backward(heads, tails, weights, x)
        ctx.n_entities, ctx.chunk = n_entities, chunk
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        heads, tails, weights, x = ctx.saved_tensors
        grad_w = grad_x = None
        if ctx.needs_input_grad[3]:
            size = (x.shape[0], ctx.n_entities)
            a_t = torch.sparse_coo_tensor(torch.stack([tails, heads]), weights, size, check_invariants=False)
            grad_x = torch.sparse.mm(a_t, grad.contiguous())
        if ctx.needs_input_grad[2]:
            e = heads.numel()
            grad_w = torch.empty_like(weights)
            for s in range(0, e, ctx.chunk):
                h, t = heads[s : s + ctx.chunk], tails[s : s + ctx.chunk]
                grad_w[s : s + ctx.chunk] = (grad[h] * x[t]).sum(-1).to(weights.dtype)
        return None, None, grad_w, grad_x, None, None


def kg_propagate(
    heads: Tensor, tails: Tensor, weights: Tensor, x: Tensor, n_entities: int, chunk: int = 1 << 18
) -> Tensor:
    """``out[h] = sum_e weights[e] * x[tails[e]]`` over the edges with ``heads[e] == h`` (Eq. 10).

    One sparse matmul forward; gradients flow to ``weights`` and ``x`` (custom backward, see
    the module docstring). Repeated (head, tail) pairs (several relations) are summed.

    Args:
        heads, tails: (E,) int64; heads in ``[0, n_entities)``, tails in ``[0, x.shape[0])``.
        weights: (E,) float edge weights (e.g. :func:`segment_softmax` output), may require grad.
        x: (N, d) float entity representations, may require grad.
        n_entities: number of output rows.
        chunk: edges per block in the backward of ``weights`` (temporary ~ 2 x chunk x d).

    Returns:
        (n_entities, d), dtype of ``x``.
    """
    heads = heads.reshape(-1).long()
    tails = tails.reshape(-1).long()
    weights = weights.reshape(-1)
    if not (heads.numel() == tails.numel() == weights.numel()):
        lengths = (heads.numel(), tails.numel(), weights.numel())
        raise ValueError(f"heads/tails/weights differ in length: {lengths}")
    if heads.numel():
        h_min, h_max, t_min, t_max = torch.stack([heads.min(), heads.max(), tails.min(), tails.max()]).tolist()
        if h_min < 0 or h_max >= n_entities or t_min < 0 or t_max >= x.shape[0]:
            raise ValueError(f"heads must lie in [0, {n_entities}) and tails in [0, {x.shape[0]})")
    if weights.dtype != x.dtype:
        weights = weights.to(x.dtype)
    return _KGPropagate.apply(heads, tails, weights, x, n_entities, chunk)

"""Loss terms of SLIF-MR (paper Eq. 19-24) as pure functions.

The total (Eq. 24) is composed by the model; these functions only compute the parts.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def bpr_loss(pos_scores: Tensor, neg_scores: Tensor) -> Tensor:
    """BPR (Eq. 23): mean over pairs of -log sigmoid(pos - neg).

    Written as softplus(neg - pos), which is the same value but does not underflow
    for large score gaps. A mean, not the paper's sum, so lr does not scale with batch.
    """
    # pos_scores, neg_scores: (B,)
    return F.softplus(neg_scores - pos_scores).mean()


def distinct_items(idx: Tensor, fixed_shape: bool | None = None) -> tuple[Tensor, Tensor | None]:
    """The batch's distinct items for the in-batch consistency terms, where a repeated item would
    be its own negative.

    ``(torch.unique(idx), None)`` on the CPU: fewer rows, less loss work. Elsewhere (``fixed_shape``
    None and a GPU, or ``fixed_shape=True``) ``(sorted idx (B,), keep (B,) bool)`` with ``keep`` true
    at each value's first position: the same items as ``unique`` in the same order, ``sorted[keep]``,
    but with a shape that does not depend on the data, because ``unique`` must read its output size
    back on the host (a synchronisation inside every CUDA step, issue 13). The losses below take
    ``keep`` and ignore the rows and columns it drops."""
    # idx: (B,) item ids
    if fixed_shape is None:
        fixed_shape = idx.device.type != "cpu"
    if not fixed_shape:
        return torch.unique(idx), None
    s = torch.sort(idx).values  # (B,)
    keep = torch.ones_like(s, dtype=torch.bool)  # (B,)
    keep[1:] = s[1:] != s[:-1]
    return s, keep


def kept_row_weights(keep: Tensor, dtype: torch.dtype) -> Tensor:
    """(B,) weights of a mean over the kept rows: 1/#kept where ``keep``, 0 elsewhere (no host read
    of the count)."""
    k = keep.to(dtype)
    return k / k.sum()


# Rows per tile of the B x B similarity blocks below: a tile holds about this many entries. On the
# CPU a whole (V, B, B) block (V views, B ~ 3,500 items at Amazon-Book scale: 147 MB) is freshly
# allocated memory for each of a dozen elementwise passes, forward and backward; above glibc's mmap
# threshold (32 MB) each allocation page-faults on first touch, which made these two losses most of
# a SLIF-MR step (issue 13). Tiles of 2^21 entries (8 MB) stay in cache and in the heap. On a GPU
# one tile covers the block up to 2^27 entries, so the step's kernel count does not grow.
TILE_ENTRIES = {"cpu": 1 << 21, "default": 1 << 27}


def _rows_per_tile(device: torch.device, views: int, n: int) -> int:
    """Rows c (1 <= c <= n) per tile of the (views, n, n) blocks, so a (views, c, n) tile has at
    most TILE_ENTRIES entries."""
    budget = TILE_ENTRIES.get(device.type, TILE_ENTRIES["default"])
    return max(1, min(n, budget // max(1, views * n)))


class _InfoNCE(torch.autograd.Function):
    """(V,) ``mean_i [logsumexp_j (v_ai . x_j / tau) - v_ai . x_i / tau]`` (j != i with
    ``exclude``) over row tiles of the (V, B, B) logits, never the whole block: forward keeps
    only each row's logsumexp (V, B); backward recomputes a tile and forms its softmax in place.
    ``x`` is the stop-gradient target, so only ``v`` gets a gradient."""

    @staticmethod
    def forward(ctx, v: Tensor, x: Tensor, tau: float, exclude: bool, keep: Tensor | None) -> Tensor:
        # v: (V, B, d) unit rows, x: (B, d) unit rows (no gradient), keep: (B,) bool or None
        n = x.shape[0]
        xs = x / tau  # (B, d): logits = v @ xs.T, the 1/tau folded into the small factor
        lse = v.new_empty(v.shape[:2])  # (V, B)
        pos = v.new_empty(v.shape[:2])  # (V, B)
        step = _rows_per_tile(v.device, v.shape[0], n)
        for r0 in range(0, n, step):
            tile = torch.matmul(v[:, r0:r0 + step], xs.T)  # (V, c, B)
            diag = tile.diagonal(offset=r0, dim1=-2, dim2=-1)  # (V, c): the positives (i, i)
            pos[:, r0:r0 + step] = diag
            if keep is not None:
                tile.masked_fill_(~keep, float("-inf"))  # dropped items are nobody's negative
            if exclude:
                diag.fill_(float("-inf"))
            lse[:, r0:r0 + step] = torch.logsumexp(tile, dim=-1)
        if keep is None:
            ctx.save_for_backward(v, xs, lse, lse.new_empty(0), lse.new_empty(0))
            ctx.exclude, ctx.step, ctx.masked = exclude, step, False
            return (lse - pos).mean(-1)
        w = kept_row_weights(keep, v.dtype)  # (B,)
        ctx.save_for_backward(v, xs, lse, w, keep)
        ctx.exclude, ctx.step, ctx.masked = exclude, step, True
        return (lse - pos).mul(w).sum(-1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        v, xs, lse, w, keep = ctx.saved_tensors
        n, step = xs.shape[0], ctx.step
        if ctx.masked:  # (V, B, 1): d (mean over kept rows) / d row i, 0 on dropped rows
            scale = grad.view(-1, 1, 1) * w.view(1, -1, 1)
        else:  # (V, 1, 1): d mean_i / d row i
            scale = (grad / n).view(-1, 1, 1).expand(-1, n, 1)
        grad_v = torch.empty_like(v)
        for r0 in range(0, n, step):
            tile = torch.matmul(v[:, r0:r0 + step], xs.T)  # (V, c, B)
            if ctx.masked:
                tile.masked_fill_(~keep, float("-inf"))
            if ctx.exclude:
                tile.diagonal(offset=r0, dim1=-2, dim2=-1).fill_(float("-inf"))
            tile.sub_(lse[:, r0:r0 + step, None]).exp_()  # softmax over j
            # d/dv_ai [lse_ai - pos_ai] = sum_j p_aij xs_j - xs_i
            grad_v[:, r0:r0 + step] = (torch.matmul(tile, xs) - xs[r0:r0 + step]) * scale[:, r0:r0 + step]
        return grad_v, None, None, None, None


class _Uniformity(torch.autograd.Function):
    """(V,) ``logsumexp_{i,j} (2t (min(z_ai . z_aj, 1) - 1))`` (= ``-t ||z_ai - z_aj||^2`` on the
    sphere, clamped at 0 as before) over row tiles of the (V, B, B) Gram blocks: forward keeps one
    logsumexp per tile, backward recomputes each tile's share ``p`` of the total and returns
    ``4t p @ z`` (the Gram block is symmetric, so row and column terms are equal)."""

    @staticmethod
    def forward(ctx, z: Tensor, t: float, keep: Tensor | None) -> Tensor:
        # z: (V, B, d) unit rows, keep: (B,) bool or None (pairs of kept items only)
        n = z.shape[1]
        step = _rows_per_tile(z.device, z.shape[0], n)
        parts = []
        for r0 in range(0, n, step):
            tile = torch.matmul(z[:, r0:r0 + step], z.transpose(-1, -2))  # (V, c, B) Gram rows
            tile.clamp_max_(1.0).sub_(1.0).mul_(2.0 * t)
            if keep is not None:
                tile.masked_fill_(_dropped_pairs(keep, r0, step), float("-inf"))
            parts.append(torch.logsumexp(tile.flatten(1), dim=-1))  # (V,)
        total = torch.logsumexp(torch.stack(parts), dim=0)  # (V,)
        ctx.save_for_backward(z, total, keep if keep is not None else total.new_empty(0))
        ctx.t, ctx.step, ctx.masked = t, step, keep is not None
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        z, total, keep = ctx.saved_tensors
        n, t, step = z.shape[1], ctx.t, ctx.step
        scale = (4.0 * t * grad).view(-1, 1, 1)  # (V, 1, 1)
        grad_z = torch.empty_like(z)
        for r0 in range(0, n, step):
            gram = torch.matmul(z[:, r0:r0 + step], z.transpose(-1, -2))  # (V, c, B)
            off = gram > 1.0  # clamped entries carry no gradient
            if ctx.masked:
                off |= _dropped_pairs(keep, r0, step)
            p = gram.sub_(1.0).mul_(2.0 * t).sub_(total.view(-1, 1, 1)).exp_().masked_fill_(off, 0.0)
            grad_z[:, r0:r0 + step] = torch.matmul(p, z) * scale
        return grad_z, None, None


def _dropped_pairs(keep: Tensor, r0: int, step: int) -> Tensor:
    """(c, B) bool: the pairs (i, j) of rows r0..r0+c with item i or j dropped by ``keep``."""
    return ~(keep[r0:r0 + step, None] & keep[None, :])


def inter_modal_loss(view: Tensor, fused: Tensor, tau: float, exclude_positive: bool = True,
                     keep: Tensor | None = None) -> Tensor:
    """Inter-modal consistency (Eq. 19) of one view against the fused items.

    InfoNCE with cosine similarity and temperature ``tau`` over the B items of the
    batch: item i of ``view`` should be closest to item i of ``fused``. ``fused`` is
    detached here (the paper's sg(.)), so the alignment is one-way: only the view moves.
    ``exclude_positive=True`` follows the paper's denominator (sum over j != i);
    ``False`` is the usual InfoNCE (j over all items). The paper sums over i; we take the
    mean so the weight beta does not depend on the batch size. Computed in row tiles
    (:data:`TILE_ENTRIES`), never as a whole B x B block per view. ``keep`` (from
    :func:`distinct_items`) restricts rows and columns to the kept items: the value (and gradient)
    of the loss over ``view[keep]``, ``fused[keep]``.
    """
    # view: (B, d) or (V, B, d) (V views at once: one value per view), fused: (B, d), keep: (B,) bool
    v = F.normalize(view, dim=-1)
    x = F.normalize(fused.detach(), dim=-1)
    out = _InfoNCE.apply(v if v.dim() == 3 else v.unsqueeze(0), x, float(tau), bool(exclude_positive), keep)  # (V,)
    return out if v.dim() == 3 else out.squeeze(0)


def uniformity_loss(x: Tensor, t: float = 2.0, keep: Tensor | None = None) -> Tensor:
    """Intra-modal consistency (Eq. 21): log mean_{i,j} exp(-t ||f(x_i) - f(x_j)||^2).

    f is L2 normalisation; the mean runs over all B^2 ordered pairs of the batch,
    diagonal (i == j) included, as the paper's 1/|I|^2 sum_{i,j} says (Wang & Isola
    use pdist, i.e. i < j; the diagonal only adds a constant-sized term). The log is
    outside the mean (the text's intent, a uniform spread), not inside as printed.
    Computed in row tiles of the Gram block (:data:`TILE_ENTRIES`). ``keep`` (from
    :func:`distinct_items`): the loss over ``x[keep]`` only.
    """
    # x: (B, d) or (V, B, d) (V views at once: one value per view), keep: (B,) bool
    z = F.normalize(x, dim=-1)
    zz = z if z.dim() == 3 else z.unsqueeze(0)
    n = zz.shape[1]
    log_pairs = 2.0 * (math.log(n) if keep is None else keep.sum().to(zz.dtype).log())  # log of #pairs
    out = _Uniformity.apply(zz, float(t), keep) - log_pairs  # (V,): log of the mean over the pairs
    return out if z.dim() == 3 else out.squeeze(0)


def l2_reg(*tensors: Tensor) -> Tensor:
    """L2 penalty on the batch's ego embeddings: 0.5 * sum ||.||^2 / B (LightGCN convention).

    B is the first dimension of the first tensor (the batch size), so the penalty is
    per example and eta does not depend on the batch size.
    """
    if not tensors:
        raise ValueError("l2_reg needs at least one tensor")
    batch = tensors[0].shape[0]
    return 0.5 * sum(t.pow(2).sum() for t in tensors) / batch

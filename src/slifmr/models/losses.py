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


def inter_modal_loss(view: Tensor, fused: Tensor, tau: float, exclude_positive: bool = True) -> Tensor:
    """Inter-modal consistency (Eq. 19) of one view against the fused items.

    InfoNCE with cosine similarity and temperature ``tau`` over the B items of the
    batch: item i of ``view`` should be closest to item i of ``fused``. ``fused`` is
    detached here (the paper's sg(.)), so the alignment is one-way: only the view moves.
    ``exclude_positive=True`` follows the paper's denominator (sum over j != i);
    ``False`` is the usual InfoNCE (j over all items). The paper sums over i; we take the
    mean so the weight beta does not depend on the batch size.
    """
    # view: (B, d) or (V, B, d) (V views at once: one value per view), fused: (B, d)
    v = F.normalize(view, dim=-1)
    x = F.normalize(fused.detach(), dim=-1)
    logits = v @ x.T / tau  # (..., B, B), logits[i, j] = sim(view_i, sg(fused_j)) / tau
    pos = logits.diagonal(dim1=-2, dim2=-1)  # (..., B)
    if exclude_positive:
        eye = torch.eye(logits.shape[-1], dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(eye, float("-inf"))
    return (torch.logsumexp(logits, dim=-1) - pos).mean(-1)


def uniformity_loss(x: Tensor, t: float = 2.0) -> Tensor:
    """Intra-modal consistency (Eq. 21): log mean_{i,j} exp(-t ||f(x_i) - f(x_j)||^2).

    f is L2 normalisation; the mean runs over all B^2 ordered pairs of the batch,
    diagonal (i == j) included, as the paper's 1/|I|^2 sum_{i,j} says (Wang & Isola
    use pdist, i.e. i < j; the diagonal only adds a constant-sized term). The log is
    outside the mean (the text's intent, a uniform spread), not inside as printed.
    """
    # x: (B, d) or (V, B, d) (V views at once: one value per view)
    z = F.normalize(x, dim=-1)
    sq_dist = (2.0 - 2.0 * (z @ z.transpose(-1, -2))).clamp_min(0.0)  # (..., B, B), ||z_i - z_j||^2 on the sphere
    n = sq_dist.shape[-1] * sq_dist.shape[-2]
    return torch.logsumexp((-t * sq_dist).flatten(-2), dim=-1) - math.log(n)


def l2_reg(*tensors: Tensor) -> Tensor:
    """L2 penalty on the batch's ego embeddings: 0.5 * sum ||.||^2 / B (LightGCN convention).

    B is the first dimension of the first tensor (the batch size), so the penalty is
    per example and eta does not depend on the batch size.
    """
    if not tensors:
        raise ValueError("l2_reg needs at least one tensor")
    batch = tensors[0].shape[0]
    return 0.5 * sum(t.pow(2).sum() for t in tensors) / batch

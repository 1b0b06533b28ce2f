"""Fusion of the heterogeneous item views (paper Eq. 14-15 and the Fig. 5 variants).

Every module takes ``views = [x̄, x̃, x̂]`` (each (N, d); any V >= 1 views, since
ablations drop some) and returns ``(fused (N, d), weights (N, V) or None)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

FUSION_KINDS = ("ailf", "concat", "sum", "attention")


def _check(views: list[Tensor], n_views: int) -> None:
    if len(views) != n_views:
        raise ValueError(f"expected {n_views} views, got {len(views)}")


class AILF(nn.Module):
    """Attention-based item-level fusion (Eq. 14-15): one weight vector per item.

    alpha_i = softmax((W [v1_i | ... | vV_i] + b) / sqrt(d)); x_i = sum_v alpha_i^v v_i.
    """

    def __init__(self, dim: int, n_views: int = 3) -> None:
        super().__init__()
        self.dim, self.n_views = dim, n_views
        self.proj = nn.Linear(n_views * dim, n_views)  # W in R^{Vd x V}, b in R^V
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, views: list[Tensor]) -> tuple[Tensor, Tensor | None]:
        _check(views, self.n_views)
        stacked = torch.stack(views, dim=1)  # (N, V, d)
        logits = self.proj(stacked.flatten(1)) / math.sqrt(self.dim)  # (N, V)
        alpha = torch.softmax(logits, dim=-1)  # (N, V)
        fused = (alpha.unsqueeze(-1) * stacked).sum(dim=1)  # (N, d)
        return fused, alpha


class ConcatFusion(nn.Module):
    """Fig. 5 "concat": concatenate the views and project back to d with one linear map."""

    def __init__(self, dim: int, n_views: int = 3) -> None:
        super().__init__()
        self.n_views = n_views
        self.proj = nn.Linear(n_views * dim, dim)
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, views: list[Tensor]) -> tuple[Tensor, Tensor | None]:
        _check(views, self.n_views)
        return self.proj(torch.cat(views, dim=-1)), None  # (N, Vd) -> (N, d)


class SumFusion(nn.Module):
    """Fig. 5 "sum": the plain (unweighted, not averaged) sum of the views; no parameters.

    A sum rather than a mean, as the figure names it; the scale differs from a mean by
    the constant V, which cosine-based losses and ranking ignore.
    """

    def __init__(self, dim: int, n_views: int = 3) -> None:
        super().__init__()
        self.n_views = n_views

    def forward(self, views: list[Tensor]) -> tuple[Tensor, Tensor | None]:
        _check(views, self.n_views)
        return torch.stack(views, dim=0).sum(dim=0), None  # (N, d)


class AttentionFusion(nn.Module):
    """Fig. 5 "attention": one learnable weight vector shared by all items (not item-level).

    The contrast with AILF isolates the value of per-item weights. Logits start at 0,
    i.e. uniform 1/V weights.
    """

    def __init__(self, dim: int, n_views: int = 3) -> None:
        super().__init__()
        self.n_views = n_views
        self.logits = nn.Parameter(torch.zeros(n_views))  # (V,)

    def forward(self, views: list[Tensor]) -> tuple[Tensor, Tensor | None]:
        _check(views, self.n_views)
        stacked = torch.stack(views, dim=1)  # (N, V, d)
        w = torch.softmax(self.logits, dim=0)  # (V,)
        fused = torch.einsum("v,nvd->nd", w, stacked)  # (N, d)
        return fused, w.unsqueeze(0).expand(stacked.shape[0], -1)  # (N, V)


_REGISTRY: dict[str, type[nn.Module]] = {
    "ailf": AILF,
    "concat": ConcatFusion,
    "sum": SumFusion,
    "attention": AttentionFusion,
}


def build_fusion(kind: str, dim: int, n_views: int) -> nn.Module:
    """Build the fusion module named by the config key ``fusion``."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown fusion {kind!r}; allowed: {', '.join(FUSION_KINDS)}")
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    return _REGISTRY[kind](dim, n_views)

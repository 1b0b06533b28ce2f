"""Interaction-graph encoder (Eq. 7-8): LightGCN propagation with a residual to layer 0."""

from __future__ import annotations

import torch
from torch import Tensor


def lightgcn_residual(adj: Tensor, ego: Tensor, n_layers: int) -> Tensor:
    """``mean(layers 1..L) + layer 0`` over a normalised sparse graph; ``L = 0`` returns ``ego``.

    adj: (N, N) sparse, ego: (N, d) -> (N, d).
    """
    if n_layers == 0:
        return ego
    x, acc = ego, torch.zeros_like(ego)
    for _ in range(n_layers):
        x = adj @ x
        acc = acc + x
    return acc / n_layers + ego

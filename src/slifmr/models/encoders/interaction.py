"""Graph propagation read out over its layers: the interaction-graph encoder (Eq. 7-8, LightGCN),
also the feature-graph encoder's and every LightGCN-style baseline's. Read out as LightGCN's layer
mean (default) or as Eq. 8-9's residual to layer 0."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


READOUTS = ("residual", "mean")


def propagate(step: Callable[[Tensor], Tensor], x0: Tensor, n_layers: int, readout: str = "mean") -> Tensor:
    """Layers ``x_{l+1} = step(x_l)`` from ``x0`` (N, d), read out as LightGCN's ``mean(layers 0..L)``
    (``'mean'``) or Eq. 8-9's ``mean(layers 1..L) + layer 0`` (``'residual'``); ``L = 0`` returns ``x0``.

    The mean sums from layer 0 up and then divides, the order of ``torch.stack(layers).mean(0)``
    (LightGCN's reference form, bit for bit); the residual sums layers 1..L, then adds layer 0.
    """
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got '{readout}'")
    if n_layers == 0:
        return x0
    x = x0
    acc = x0 if readout == "mean" else torch.zeros_like(x0)
    for _ in range(n_layers):
        x = step(x)
        acc = acc + x
    return acc / (n_layers + 1) if readout == "mean" else acc / n_layers + x0


def lightgcn_readout(adj, ego: Tensor, n_layers: int, readout: str = "mean") -> Tensor:
    """LightGCN propagation over a normalised graph, read out (:func:`propagate`).

    adj: (N, N) sparse operator, ego: (N, d) -> (N, d).
    """
    return propagate(lambda x: adj @ x, ego, n_layers, readout)

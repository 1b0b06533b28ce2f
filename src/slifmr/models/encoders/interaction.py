"""Interaction-graph encoder (Eq. 7-8): LightGCN propagation, read out as LightGCN's layer mean
(default) or as Eq. 8's residual to layer 0."""

from __future__ import annotations

import torch
from torch import Tensor


READOUTS = ("residual", "mean")


def lightgcn_readout(adj, ego: Tensor, n_layers: int, readout: str = "mean") -> Tensor:
    """``mean(layers 1..L) + layer 0`` (Eq. 8, ``readout='residual'``) or LightGCN's
    ``mean(layers 0..L)`` (``'mean'``) over a normalised graph; ``L = 0`` returns ``ego``.

    adj: (N, N) sparse operator, ego: (N, d) -> (N, d).
    """
    if n_layers == 0:
        return ego
    x, acc = ego, torch.zeros_like(ego)
    for _ in range(n_layers):
        x = adj @ x
        acc = acc + x
    return readout_layers(acc, ego, n_layers, readout)


def readout_layers(acc: Tensor, ego: Tensor, n_layers: int, readout: str) -> Tensor:
    """Combine the sum of layers 1..L (``acc``) with layer 0 by the chosen readout."""
    if readout == "residual":
        return acc / n_layers + ego
    if readout == "mean":
        return (acc + ego) / (n_layers + 1)
    raise ValueError(f"readout must be one of {READOUTS}, got '{readout}'")

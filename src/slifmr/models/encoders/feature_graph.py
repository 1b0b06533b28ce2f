"""Item feature-graph encoder (Eq. 5, 9): propagation over ``S = sum_m alpha_m S^m``.

``alpha = softmax(logits)`` is learned (Eq. 5). The graphs come from the DataModule (kNN on
raw features, Laplacian-normalised, self-loop graph injected); this module only propagates.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from slifmr.models.encoders.interaction import propagate


class FeatureGraphEncoder(nn.Module):
    """``L_m`` layers of ``x <- S x`` (no self term), read out like the interaction encoder:
    ``mean(layers 0..L_m)`` or Eq. 9's ``mean(layers 1..L_m) + layer 0`` (``readout``)."""

    def __init__(self, n_modalities: int, n_layers: int, readout: str = "mean"):
        super().__init__()
        self.n_layers = n_layers
        self.readout = readout
        self.modality_logits = nn.Parameter(torch.zeros(max(n_modalities, 1)))

    def modality_weights(self) -> Tensor:
        return torch.softmax(self.modality_logits, dim=0)

    def forward(self, graphs: list[Tensor], x0: Tensor) -> Tensor:
        """graphs: per-modality (I, I) sparse; x0: (I, d) layer-0 item representation."""
        if self.n_layers == 0 or not graphs:
            return x0
        alpha = self.modality_weights()
        return propagate(lambda x: sum(alpha[m] * (g @ x) for m, g in enumerate(graphs)), x0, self.n_layers,
                         self.readout)

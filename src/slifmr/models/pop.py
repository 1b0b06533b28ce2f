"""Most-popular: every user gets items ranked by train popularity (the sanity floor)."""

from __future__ import annotations

import torch
from torch import Tensor

from slifmr.models.base import TOPK, RecModel


class Pop(RecModel):
    """No learning: one pass over the data fills the popularity buffer from the graph store."""

    def __init__(self, meta: dict, topk=TOPK):
        super().__init__(meta, lr=0.0, topk=topk)
        self.save_hyperparameters()
        self.register_buffer("popularity", torch.zeros(self.n_items))
        self.automatic_optimization = False

    def attach(self, graphs) -> None:
        super().attach(graphs)
        self.popularity.copy_(graphs.item_popularity().to(self.popularity))

    def embeddings(self) -> tuple[Tensor, Tensor]:
        return torch.zeros(1), self.popularity

    def score(self, users: Tensor, cache: tuple[Tensor, Tensor]) -> Tensor:
        return cache[1].unsqueeze(0).expand(len(users), -1).clone()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        return None

    def on_train_epoch_end(self) -> None:
        self.trainer.should_stop = True  # nothing to learn: one epoch (and its validation) is enough

    def configure_optimizers(self):
        return None

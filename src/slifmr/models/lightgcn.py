"""LightGCN (He et al., SIGIR 2020): linear propagation on the normalised interaction graph,
final embedding = mean over layers 0..L."""

from __future__ import annotations

import torch
from torch import Tensor

from slifmr.models.base import TOPK, RecModel, rows
from slifmr.models.encoders.interaction import lightgcn_readout
from slifmr.models.losses import bpr_loss, l2_reg


class LightGCN(RecModel):
    def __init__(self, meta: dict, embedding_dim: int = 64, n_layers: int = 3, reg_weight: float = 1e-4,
                 lr: float = 1e-3, topk=TOPK):
        super().__init__(meta, lr=lr, topk=topk)
        self.save_hyperparameters()
        self.n_layers = n_layers
        self.reg_weight = reg_weight
        self.init_id_embeddings(embedding_dim)

    def embeddings(self) -> tuple[Tensor, Tensor]:
        ego = torch.cat([self.user_emb.weight, self.item_emb.weight])  # (U+I, d)
        out = lightgcn_readout(self.graphs.interaction_adj(self.device), ego, self.n_layers)
        return out[: self.n_users], out[self.n_users :]

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        users, items = self.embeddings()
        u, p, n = rows(users, batch["users"]), rows(items, batch["pos"]), rows(items, batch["neg"])
        bpr = bpr_loss((u * p).sum(-1), (u * n).sum(-1))
        reg = l2_reg(self.user_emb(batch["users"]), self.item_emb(batch["pos"]), self.item_emb(batch["neg"]))
        return {"loss": bpr + self.reg_weight * reg, "bpr": bpr, "reg": reg}

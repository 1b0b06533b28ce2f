"""MF-BPR (Rendle et al., UAI 2009): dot product of user and item ID embeddings."""

from __future__ import annotations

from torch import Tensor

from slifmr.models.base import TOPK, RecModel
from slifmr.models.losses import bpr_loss, l2_reg


class MF(RecModel):
    def __init__(self, meta: dict, embedding_dim: int = 64, reg_weight: float = 1e-4, lr: float = 1e-3,
                 topk=TOPK):
        super().__init__(meta, lr=lr, topk=topk)
        self.save_hyperparameters()
        self.reg_weight = reg_weight
        self.init_id_embeddings(embedding_dim)

    def embeddings(self) -> tuple[Tensor, Tensor]:
        return self.user_emb.weight, self.item_emb.weight

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        u = self.user_emb(batch["users"])
        p = self.item_emb(batch["pos"])
        n = self.item_emb(batch["neg"])
        bpr = bpr_loss((u * p).sum(-1), (u * n).sum(-1))
        reg = l2_reg(u, p, n)
        return {"loss": bpr + self.reg_weight * reg, "bpr": bpr, "reg": reg}

"""BM3 (Zhou et al., "Bootstrap Latent Representations for Multi-modal Recommendation", WWW 2023)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slifmr.models.base import TOPK, RecModel, rows
from slifmr.models.encoders.raw_features import RawFeatures, require_features
from slifmr.models.encoders.interaction import lightgcn_readout


def bootstrap_loss(online: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """``1 - mean_i cos(online_i, sg(target_i))``: the target is a constant (stop-gradient), so
    only the online branch moves. ``weight`` (B,) in {0, 1} restricts the mean to some rows
    (items that have the modality); an all-zero weight gives 0.

    online, target: (B, d).
    """
    cos = F.cosine_similarity(online, target.detach(), dim=-1)  # (B,)
    if weight is None:
        return 1.0 - cos.mean()
    w = weight.to(cos.dtype)
    return (w * (1.0 - cos)).sum() / w.sum().clamp_min(1.0)


class BM3(RecModel):
    """BM3: a LightGCN online encoder over the interaction graph, item representation
    ``mean(layers 0..L) + item ID`` (the release's residual), each modality projected to d; a
    shared predictor makes the online views; the targets are dropout-perturbed copies of the
    encoder outputs under stop-gradient (no target network, no negatives). Loss per batch of
    observed (u, i) pairs (negatives in the batch are ignored):

        (1 - cos(p(u), sg(drop(i)))) + (1 - cos(p(i), sg(drop(u))))                 # graph views
        + cl_weight * sum_m [(1 - cos(p(f_m,i), sg(drop(i))))                       # inter-modality
                             + (1 - cos(p(f_m,i), sg(drop(f_m,i))))]                # intra-modality
        + reg_weight * (||U_enc||_F + ||I_enc||_F) / |I|                            # the release's EmbLoss

    Scores: ``p(u) . p(i)`` (online user x online item after the predictor, as the release's
    ``full_sort_predict``). Items without a modality are left out of that modality's terms.

    Defaults (paper Section 4.1 and the official MMRec ``configs/model/BM3.yaml``):
    ``embedding_dim=64`` (MMRec ``embedding_size``, the projections too: ``feat_embed_dim``);
    ``n_layers=1`` (grid {1, 2}); ``dropout=0.3`` (grid {0.3, 0.5}); ``reg_weight=0.1`` (grid
    {0.1, 0.01}); ``cl_weight=2.0`` (fixed); ``finetune_features=True`` (the release's
    ``Embedding.from_pretrained(freeze=False)``); Xavier-normal predictor and projections as the
    release. The grids' first values are taken: the paper tunes per dataset and reports no
    single best. ``lr``: see conf/model/bm3.yaml.
    """

    def __init__(
        self,
        meta: dict,
        embedding_dim: int = 64,
        n_layers: int = 1,
        dropout: float = 0.3,
        reg_weight: float = 0.1,
        cl_weight: float = 2.0,
        finetune_features: bool = True,
        lr: float = 1e-3,
        topk=TOPK,
    ):
        super().__init__(meta, lr=lr, topk=topk)
        self.save_hyperparameters()
        dims = require_features(meta, "bm3")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.n_layers = n_layers
        self.dropout = dropout
        self.reg_weight = reg_weight
        self.cl_weight = cl_weight
        self.init_id_embeddings(embedding_dim)
        self.predictor = nn.Linear(embedding_dim, embedding_dim)
        nn.init.xavier_normal_(self.predictor.weight)
        self.features = RawFeatures(dims, self.n_items, embedding_dim, finetune=finetune_features, xavier=True)

    def encode(self) -> tuple[Tensor, Tensor]:
        """Online encoder outputs before the predictor: users (U, d), items (I, d)."""
        ego = torch.cat([self.user_emb.weight, self.item_emb.weight])  # (U+I, d)
        out = lightgcn_readout(self.graphs.interaction_adj(self.device), ego, self.n_layers)
        return out[: self.n_users], out[self.n_users :] + self.item_emb.weight

    def embeddings(self) -> tuple[Tensor, Tensor]:
        users, items = self.encode()
        return self.predictor(users), self.predictor(items)

    def _target(self, x: Tensor) -> Tensor:
        """The perturbed, gradient-free target view of ``x``."""
        with torch.no_grad():
            return F.dropout(x.detach(), self.dropout, training=True)

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        users, items = batch["users"], batch["pos"]  # (B,), (B,): observed pairs only
        u_enc, i_enc = self.encode()  # (U, d), (I, d)
        # targets perturbed on the whole tables, then gathered (a repeated row shares its mask)
        u_tgt, i_tgt = rows(self._target(u_enc), users), rows(self._target(i_enc), items)  # (B, d)
        align = bootstrap_loss(self.predictor(rows(u_enc, users)), i_tgt) + \
            bootstrap_loss(self.predictor(rows(i_enc, items)), u_tgt)
        mm = torch.zeros((), device=self.device)
        for proj, mask in self.features(self.graphs, self.device).values():
            f_on, w = self.predictor(rows(proj, items)), mask[items]  # (B, d), (B,)
            mm = mm + bootstrap_loss(f_on, i_tgt, w) + bootstrap_loss(f_on, rows(self._target(proj), items), w)
        reg = (u_enc.norm() + i_enc.norm()) / self.n_items
        total = align + self.cl_weight * mm + self.reg_weight * reg
        return {"loss": total, "align": align, "mm": mm, "reg": reg}

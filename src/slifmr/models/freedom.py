"""FREEDOM (Zhou & Shen, "A Tale of Two Graphs: Freezing and Denoising Graph Structures for
Multimodal Recommendation", ACM MM 2023)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from slifmr.graphs.adjacency import SparseOperator
from slifmr.graphs.pruning import check_prune_ratio
from slifmr.models.base import TOPK, RecModel, rows
from slifmr.models.encoders.raw_features import RawFeatures, require_features
from slifmr.models.losses import bpr_loss
from slifmr.models.encoders.interaction import lightgcn_readout


def masked_bpr(pos_scores: Tensor, neg_scores: Tensor, weight: Tensor) -> Tensor:
    """BPR averaged over the pairs with ``weight`` 1 (both items have the modality); 0 if none."""
    w = weight.to(pos_scores.dtype)  # (B,)
    return (w * F.softplus(neg_scores - pos_scores)).sum() / w.sum().clamp_min(1.0)


class FREEDOM(RecModel):
    """FREEDOM: LightGCN over a degree-pruned interaction graph plus an item-item propagation
    over a *frozen* multimodal kNN graph:

        users, items_ui = mean(layers 0..n_ui_layers) of LightGCN on A_pruned (A at evaluation)
        items = items_ui + S^n_mm_layers @ item_id,   S = sum_m w_m D^-1/2 kNN_m D^-1/2 (frozen)
        loss  = BPR(users, items) + reg_weight * sum_m BPR(users, proj_m(feat_m))

    ``S`` is built once from the raw features by the graph store (unweighted kNN with
    ``knn_k`` neighbours, self excluded, per-modality Laplacian normalisation, fixed mix); it
    is not a parameter. ``A_pruned`` keeps ``1 - prune_ratio`` of the interactions, sampled
    without replacement with weights ``1/sqrt(d_u d_i)`` and re-sampled every epoch (the store's
    interaction graph from FREEDOM's own sample stream, ``stream="freedom"``).

    Modality weights ``w``: the modality named ``image_modality`` (if the dataset has it) gets
    ``mm_image_weight`` and the others share ``1 - mm_image_weight`` equally; without it, all
    modalities weigh the same. With visual + text this is exactly the release's
    ``mm_image_weight * image_adj + (1 - mm_image_weight) * text_adj``.

    Defaults (paper Section 4.1.3 and the official MMRec ``configs/model/FREEDOM.yaml``):
    ``embedding_dim=64``; ``n_ui_layers=2``; ``n_mm_layers=1``; ``knn_k=10``;
    ``mm_image_weight=0.1``; ``prune_ratio=0.8`` (the release's ``dropout``, grid {0.8, 0.9});
    ``reg_weight=1e-4`` (lambda, grid {0, 1e-5, 1e-4, 1e-3}: the middle non-zero value, the
    paper tunes per dataset); ``finetune_features=True`` (``from_pretrained(freeze=False)``);
    no L2 term (the release has none). ``lambda_coeff`` of the MMRec config is unused by the
    release (a LATTICE leftover) and is left out.

    Deviations: the kNN graph excludes the item itself (the release keeps it as its own first
    neighbour, silently leaving k-1 neighbours; SPEC engineering notes); items missing a
    modality have no edges in its graph and are left out of its BPR term.
    """

    def __init__(
        self,
        meta: dict,
        embedding_dim: int = 64,
        n_ui_layers: int = 2,
        n_mm_layers: int = 1,
        knn_k: int = 10,
        mm_image_weight: float = 0.1,
        image_modality: str = "visual",
        prune_ratio: float = 0.8,
        reg_weight: float = 1e-4,
        finetune_features: bool = True,
        lr: float = 1e-3,
        topk=TOPK,
    ):
        super().__init__(meta, lr=lr, topk=topk)
        self.save_hyperparameters()
        dims = require_features(meta, "freedom")
        if knn_k < 1:
            raise ValueError(f"knn_k must be >= 1 (neighbours per item of the feature graph), got {knn_k}")
        if not 0.0 <= mm_image_weight <= 1.0:
            raise ValueError(f"mm_image_weight must lie in [0, 1], got {mm_image_weight}")
        self.n_ui_layers = n_ui_layers
        self.n_mm_layers = n_mm_layers
        self.knn_k = knn_k
        self.prune_ratio = check_prune_ratio(prune_ratio)
        self.reg_weight = reg_weight
        self.modality_weights = self.mix_weights(list(dims), mm_image_weight, image_modality)
        self.init_id_embeddings(embedding_dim)
        self.features = RawFeatures(dims, self.n_items, embedding_dim, finetune=finetune_features)

    @staticmethod
    def mix_weights(modalities: list[str], image_weight: float, image_modality: str) -> dict[str, float]:
        """modality -> weight in the frozen graph's mix (see the class docstring)."""
        if image_modality not in modalities or len(modalities) == 1:
            return {m: 1.0 / len(modalities) for m in modalities}
        rest = (1.0 - image_weight) / (len(modalities) - 1)
        return {m: image_weight if m == image_modality else rest for m in modalities}

    def item_graph(self) -> SparseOperator:
        """The frozen (I, I) item-item graph S from the store (built on first use, then cached)."""
        return self.graphs.frozen_item_graph(self.modality_weights, k=self.knn_k, weighted=False,
                                             device=self.device)

    def on_train_epoch_start(self) -> None:
        """The epoch's graphs (the frozen S, this epoch's pruning sample of A) built on the device
        before its steps, so that no training step builds one."""
        if self.graphs is not None:
            self.item_graph()
            self.graphs.interaction_adj(self.device, prune=True, ratio=self.prune_ratio, stream="freedom")

    def forward(self) -> tuple[Tensor, Tensor]:
        """(users (U, d), items (I, d)); the pruned graph in training, the whole one otherwise."""
        h = self.item_emb.weight
        s = self.item_graph()
        for _ in range(self.n_mm_layers):
            h = s @ h  # (I, d)
        adj = self.graphs.interaction_adj(self.device, prune=self.training, ratio=self.prune_ratio, stream="freedom")
        ego = torch.cat([self.user_emb.weight, self.item_emb.weight])  # (U+I, d)
        out = lightgcn_readout(adj, ego, self.n_ui_layers)
        return out[: self.n_users], out[self.n_users :] + h

    def embeddings(self) -> tuple[Tensor, Tensor]:
        return self.forward()

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        users, pos, neg = batch["users"], batch["pos"], batch["neg"]
        u_all, i_all = self.forward()
        u = rows(u_all, users)  # (B, d)
        bpr = bpr_loss((u * rows(i_all, pos)).sum(-1), (u * rows(i_all, neg)).sum(-1))
        mm = torch.zeros((), device=self.device)
        for proj, mask in self.features(self.graphs, self.device).values():
            mm = mm + masked_bpr((u * rows(proj, pos)).sum(-1), (u * rows(proj, neg)).sum(-1), mask[pos] & mask[neg])
        return {"loss": bpr + self.reg_weight * mm, "bpr": bpr, "mm": mm}

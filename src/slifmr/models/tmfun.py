"""TMFUN (Zhou, Guo, Sun, Song, Yu, "Attention-guided Multi-step Fusion: A Hierarchical Fusion
Network for Multimodal Recommendation", SIGIR 2023 short paper, arXiv 2304.11979).

Source: no official release was found (code index searched for TMFUN / the paper title; none), and
only the paper's abstract and overview were readable from the stored material, not its method
section (re-checked 2026-11-27: the stored copies -- arXiv/ar5iv 2304.11979, the SPIQA tex and
paragraph dumps, review sites -- give the abstract and the introduction only; the SLIF-MR paper
says no more than "attention-guided multi-step fusion strategy and contrastive learning" and
"an attention-based aggregator"), so no equation-by-equation check against the paper is possible. This file therefore follows the four components the paper names -- modality feature
graphs and an item feature graph over the raw features, an attention module between the
interaction side and the modalities that fuses them early, attention-guided multi-step fusion of
features of different granularity into the item representation, and contrastive inter-modal
alignment -- with the concrete operators our own reading, built from the pieces the paper builds
on (LATTICE/FREEDOM kNN feature graphs, LightGCN). Treat it as "TMFUN as described", not as a
reproduction of its code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slifmr.graphs.adjacency import SparseOperator
from slifmr.models.base import TOPK, RecModel, rows
from slifmr.models.encoders.interaction import lightgcn_readout
from slifmr.models.encoders.raw_features import RawFeatures, require_features
from slifmr.models.losses import bpr_loss, distinct_items, kept_row_weights, l2_reg


def attention_fusion(query: Tensor, views: Tensor, w_q: Tensor, w_k: Tensor) -> tuple[Tensor, Tensor]:
    """Early-step fusion: ``alpha_{i,m} = softmax_m((W_q q_i) · (W_k v_{i,m}) / sqrt(d))``,
    ``f_i = sum_m alpha_{i,m} v_{i,m}``: each item weighs its modalities by how well they match its
    interaction-side (ID) embedding.

    query (N, d), views (N, M, d), w_q / w_k (d, d) -> (fused (N, d), alpha (N, M))."""
    q = query @ w_q  # (N, d)
    k = views @ w_k  # (N, M, d)
    alpha = torch.softmax((k * q.unsqueeze(1)).sum(-1) / math.sqrt(query.shape[1]), dim=1)  # (N, M)
    return (alpha.unsqueeze(-1) * views).sum(1), alpha


def inter_modal_infonce(a: Tensor, b: Tensor, tau: float, keep: Tensor | None = None) -> Tensor:
    """Symmetric in-batch InfoNCE between two modality views of the same items (cosine / tau):
    ``mean_i [ -log softmax_j(s_ij)_i - log softmax_j(s_ji)_i ] / 2``. a, b: (B, d).

    Written as logsumexp minus the diagonal rather than ``F.cross_entropy(logits, arange(B))``
    (the same value): cross_entropy's ``nll_loss`` has no deterministic CUDA kernel, so it would
    raise under ``trainer.deterministic=true``. ``keep`` (B,) bool (from
    :func:`~slifmr.models.losses.distinct_items` on a GPU): the loss over ``a[keep]``, ``b[keep]``,
    computed at a fixed shape."""
    logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / tau  # (B, B)
    diag = logits.diagonal()  # (B,)
    if keep is None:
        return 0.5 * ((torch.logsumexp(logits, dim=1) - diag).mean() + (torch.logsumexp(logits, dim=0) - diag).mean())
    w = kept_row_weights(keep, logits.dtype)  # (B,): mean over kept rows
    rows_lse = torch.logsumexp(logits.masked_fill(~keep, float("-inf")), dim=1)  # over kept j
    cols_lse = torch.logsumexp(logits.masked_fill(~keep[:, None], float("-inf")), dim=0)  # over kept i
    return 0.5 * (((rows_lse - diag) * w).sum() + ((cols_lse - diag) * w).sum())


class TMFUN(RecModel):
    """TMFUN as described by its paper (see the module docstring for the source):

        S_m  = Laplacian-normalised kNN graph of modality m's raw features (``knn_k``)   modality feature graphs
        S    = mean_m S_m                                                               item feature graph
        z_m  = S_m^{n_mm_layers} (W_m x_m + b_m)                                         (I, d) per modality
        f    = sum_m alpha_m z_m,  alpha = softmax_m((W_q e_i) · (W_k z_m) / sqrt(d))    early-step fusion
        g    = S^{n_mm_layers} f                                                         item-graph step
        u, i_ui = mean(layers 0..n_ui_layers) of LightGCN on A over [U; E_items]         interaction step
        item = i_ui + norm(g)                                                            late-step fusion

    Loss: ``BPR(u, item) + reg_weight * L2(batch ego embeddings) + cl_weight *
    sum_{m < m'} InfoNCE(z_m, z_m')`` over the batch's distinct positive items (inter-modal
    alignment, temperature ``tau``, the other items of the batch as negatives).

    Where this may depart from the paper (each an unverifiable reading, since its equations could
    not be read; the abstract is the only text checked):

    * the attention's query is the item's ID embedding, one weight per (item, modality); the
      abstract's "impact of multimodal data on different interactions" may mean a weight per
      (user, item) interaction, which would make scoring depend on the pair (no single user x item
      product for full ranking); we kept the per-item reading;
    * the item feature graph is the mean of the modality graphs (LATTICE/FREEDOM's weighted sum),
      not a kNN graph of concatenated features;
    * the "multi-step" fusion is our three steps (attention, item-graph propagation, sum with the
      interaction-side item after L2 normalisation); the paper's steps, their order and any
      learned gates are unknown;
    * the inter-modal contrast is a symmetric in-batch InfoNCE between the modality views of the
      batch's positive items, for every pair of modalities; the paper's pairing, negatives and
      temperature are unknown;
    * raw features stay frozen and only their projections learn (``finetune_features=false``);
    * every default below is ours (none from the paper).

    Defaults (no release to take them from): ``embedding_dim`` 64 (the paper's fixed size, as all
    baselines here), ``knn_k`` 10 and ``n_mm_layers`` 1 (LATTICE/FREEDOM, on whose feature graphs
    TMFUN builds), ``n_ui_layers`` 2, ``reg_weight`` 1e-4, ``tau`` 0.2, ``cl_weight`` 0.01, frozen raw
    features (only the projections learn), ``lr`` 1e-3 (MMRec's default for its multimodal models).
    None was tuned on our data; the tuner's grid is in conf/tune/tmfun.yaml if present.
    """

    def __init__(
        self,
        meta: dict,
        embedding_dim: int = 64,
        n_ui_layers: int = 2,
        n_mm_layers: int = 1,
        knn_k: int = 10,
        reg_weight: float = 1e-4,
        cl_weight: float = 0.01,
        tau: float = 0.2,
        finetune_features: bool = False,
        lr: float = 1e-3,
        topk=TOPK,
    ):
        super().__init__(meta, lr=lr, topk=topk)
        self.save_hyperparameters()
        dims = require_features(meta, "tmfun")
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.modalities = list(dims)
        self.n_ui_layers, self.n_mm_layers, self.knn_k = n_ui_layers, n_mm_layers, knn_k
        self.reg_weight, self.cl_weight, self.tau = reg_weight, cl_weight, tau
        d = embedding_dim
        self.init_id_embeddings(d)
        self.features = RawFeatures(dims, self.n_items, d, finetune=finetune_features, xavier=True)
        self.w_q = nn.Parameter(nn.init.xavier_uniform_(torch.empty(d, d)))
        self.w_k = nn.Parameter(nn.init.xavier_uniform_(torch.empty(d, d)))

    # -- graphs ------------------------------------------------------------------------------
    def modality_graph(self, m: str) -> SparseOperator:
        return self.graphs.frozen_item_graph({m: 1.0}, k=self.knn_k, device=self.device)

    def item_graph(self) -> SparseOperator:
        w = 1.0 / len(self.modalities)
        return self.graphs.frozen_item_graph({m: w for m in self.modalities}, k=self.knn_k, device=self.device)

    # -- model -------------------------------------------------------------------------------
    def modality_views(self) -> dict[str, Tensor]:
        """modality -> (I, d) ``z_m``, the projected features propagated on their own kNN graph."""
        out = {}
        for m, (h, _) in self.features(self.graphs, self.device).items():
            s = self.modality_graph(m)
            for _ in range(self.n_mm_layers):
                h = s @ h
            out[m] = h
        return out

    def forward(self, views: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """(users (U, d), items (I, d))."""
        views = self.modality_views() if views is None else views
        fused, _ = attention_fusion(self.item_emb.weight, torch.stack([views[m] for m in self.modalities], 1),
                                    self.w_q, self.w_k)
        g, s = fused, self.item_graph()
        for _ in range(self.n_mm_layers):
            g = s @ g
        ego = torch.cat([self.user_emb.weight, self.item_emb.weight])  # (U+I, d)
        out = lightgcn_readout(self.graphs.interaction_adj(self.device, prune=False), ego, self.n_ui_layers)
        return out[: self.n_users], out[self.n_users :] + F.normalize(g, dim=1)

    def embeddings(self) -> tuple[Tensor, Tensor]:
        return self.forward()

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        users, pos, neg = batch["users"], batch["pos"], batch["neg"]
        views = self.modality_views()
        u_all, i_all = self.forward(views)
        u = rows(u_all, users)
        bpr = bpr_loss((u * rows(i_all, pos)).sum(-1), (u * rows(i_all, neg)).sum(-1))
        reg = l2_reg(self.user_emb(users), self.item_emb(pos), self.item_emb(neg))
        items, keep = distinct_items(pos)  # each positive item once: a repeat would be its own negative
        cl = torch.zeros((), device=self.device)
        for j, a in enumerate(self.modalities):
            for b in self.modalities[j + 1:]:
                cl = cl + inter_modal_infonce(rows(views[a], items), rows(views[b], items), self.tau, keep)
        total = bpr + self.reg_weight * reg + self.cl_weight * cl
        return {"loss": total, "bpr": bpr, "reg": reg, "cl": cl}

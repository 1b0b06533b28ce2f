"""SLIF-MR (Guo et al., arXiv 2507.09998): interaction, feature-graph and KG encoders, item-level
fusion, self-loop graph enhancement (via the callback and the graph store) and consistency losses.

Equation by equation as ../shared/SPEC.md decides; each ambiguity is a constructor switch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from slifmr.errors import DataError
from slifmr.graphs.pruning import check_prune_ratio
from slifmr.models.base import TOPK, RecModel, rows
from slifmr.models.encoders.feature_graph import FeatureGraphEncoder
from slifmr.models.encoders.interaction import READOUTS, lightgcn_readout
from slifmr.models.encoders.kg_attention import KGAttentionEncoder
from slifmr.models.fusion import build_fusion
from slifmr.models.losses import bpr_loss, distinct_items, inter_modal_loss, l2_reg, uniformity_loss
from slifmr.models.protocols import SelfLoopSettings

CONSISTENCY_DEFAULTS = {"enabled": True, "beta": 1e-3, "gamma": 1e-5, "tau": 0.2, "t": 2.0,
                        "exclude_positive": True, "warmup_epochs": 0}


class SLIFMR(RecModel):
    """Score ``y_ui = x̄_u · x_i`` with ``x_i`` the fusion of x̄_i (interactions), x̃_i (features),
    x̂_i (KG). Loss (Eq. 24): ``bpr + beta*inter + gamma*intra + eta*||ego||^2``.

    ``consistency`` (Eq. 19-22) and ``self_loop`` (Eq. 16-18, :class:`SelfLoopSettings`, run by
    the self-loop callback) are dicts whose unknown keys are an error; ``knn_k`` is k of the
    feature kNN graphs (Eq. 3); ``prune_ratio`` the degree-sensitive pruning of A and G_k (Eq. 6)."""

    def __init__(
        self,
        meta: dict,
        embedding_dim: int = 64,
        L: int = 2,
        L_b: int | None = None,
        L_m: int | None = None,
        L_k: int | None = None,
        use_kg: bool = True,
        use_mm: bool = True,
        fusion: str = "ailf",
        readout: str = "mean",
        feature_input: str = "id",
        kg_score_per_layer: bool = False,
        kg_attention_every: int = 1,
        prune_ratio: float = 0.0,
        knn_k: int = 10,
        view_diagnostics: bool = True,
        consistency: dict | None = None,
        self_loop: dict | None = None,
        reg_weight: float = 1e-4,
        lr: float = 1e-3,
        topk=TOPK,
    ):
        super().__init__(meta, lr=lr, topk=topk)
        self.save_hyperparameters()
        cons = dict(CONSISTENCY_DEFAULTS)
        unknown = set(consistency or {}) - set(cons)
        if unknown:
            raise ValueError(f"unknown consistency keys {sorted(unknown)}; allowed: {sorted(cons)}")
        cons.update(consistency or {})
        self.cons = cons
        self.self_loop = SelfLoopSettings.from_dict(self_loop)
        if isinstance(knn_k, bool) or not isinstance(knn_k, int) or knn_k < 1:
            raise ValueError(f"knn_k must be an integer >= 1, got {knn_k!r}")
        self.knn_k = knn_k
        self.L_b, self.L_m, self.L_k = (L if x is None else x for x in (L_b, L_m, L_k))
        self.use_mm = use_mm and bool(meta.get("features"))
        if use_mm and not meta.get("features"):
            raise DataError("model.use_mm=true but the dataset has no feature matrices; set model.use_mm=false")
        if use_kg and int(meta.get("n_entities", 0)) == 0:
            raise DataError("model.use_kg=true but the dataset has no knowledge graph; set model.use_kg=false")
        if feature_input not in ("id", "projected"):
            raise ValueError(f"feature_input must be 'id' or 'projected', got '{feature_input}'")
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got '{readout}'")
        self.readout = readout
        self.prune_ratio = check_prune_ratio(prune_ratio)
        self.view_diagnostics = view_diagnostics
        self._last_eval: tuple[list[Tensor], Tensor | None] | None = None  # (views, fusion weights)
        self.use_kg = use_kg
        self.feature_input = feature_input
        self.reg_weight = reg_weight
        d = embedding_dim
        self.init_id_embeddings(d)
        n_views = 1
        if self.use_mm:
            self.feature_encoder = FeatureGraphEncoder(len(meta["features"]), self.L_m, readout)
            if feature_input == "projected":
                self.feature_proj = nn.ModuleDict({m: nn.Linear(dim, d) for m, dim in meta["features"].items()})
            n_views += 1
        if self.use_kg:
            n_other = int(meta["n_entities"]) - self.n_items
            self.entity_emb = nn.Embedding(max(n_other, 1), d)
            nn.init.xavier_uniform_(self.entity_emb.weight)
            self.kg_encoder = KGAttentionEncoder(int(meta["n_kg_relations"]), d, self.L_k,
                                                 score_per_layer=kg_score_per_layer,
                                                 attention_every=kg_attention_every)
            n_views += 1
        self.fusion = build_fusion(fusion, d, n_views)

    # -- encoders ------------------------------------------------------------------------------
    def _feature_x0(self) -> Tensor:
        x0 = self.item_emb.weight
        if self.feature_input == "projected":
            on = self.graphs.features_on(self.device)  # modality -> (features (I, d_m), mask (I,)), cached there
            proj = [self.feature_proj[m](on[m][0].float()) * on[m][1].unsqueeze(1) for m in self.feature_proj]
            x0 = x0 + torch.stack(proj).sum(0)
        return x0

    def views(self) -> tuple[Tensor, list[Tensor]]:
        """(x̄_u (U, d), [x̄_i, x̃_i, x̂_i] each (I, d), in that order, minus ablated views).
        Degree-sensitive pruning (Eq. 6) of A and G_k at ``prune_ratio``
        applies to training only; evaluation sees the whole graphs."""
        adj, s_graphs, kg = self.step_graphs(self.training)
        ego = torch.cat([self.user_emb.weight, self.item_emb.weight])
        bar = lightgcn_readout(adj, ego, self.L_b, self.readout)
        bar_u, bar_i = bar[: self.n_users], bar[self.n_users :]
        views = [bar_i]
        if self.use_mm:
            views.append(self.feature_encoder(s_graphs, self._feature_x0()))
        if self.use_kg:
            heads, tails, ptr, structure = kg
            x0 = torch.cat([self.item_emb.weight, self.entity_emb.weight[: self.meta["n_entities"] - self.n_items]])
            views.append(self.kg_encoder(x0, heads, tails, ptr, structure)[: self.n_items])
        return bar_u, views

    def step_graphs(self, training: bool) -> tuple:
        """(A, [S^m] or None, KG edges or None) of a training (pruned) or evaluation (whole) pass,
        on the model's device, from the store's cache (built on the first ask)."""
        g, dev = self.graphs, self.device
        ratio = self.prune_ratio
        adj = g.interaction_adj(dev, prune=training, ratio=ratio)
        s_graphs = g.feature_graphs(self.knn_k, dev) if self.use_mm else None
        if self.use_mm and self.feature_input == "projected":
            g.features_on(dev)
        kg = g.kg_edges(dev, prune=training, ratio=ratio) if self.use_kg else None
        return adj, s_graphs, kg

    def prepare_graphs(self, training: bool = True) -> None:
        """Build every graph the coming passes read before they run, so no training step builds or
        copies one: at each train epoch's start (this epoch's pruning sample, and the whole graphs of
        its validation) and, with ``training=False``, right after a self-loop refresh (the whole
        graphs it changed; the next epoch's pruned ones need that epoch's sample)."""
        if self.graphs is None:
            return
        if training:
            self.step_graphs(True)
        self.step_graphs(False)

    def on_train_epoch_start(self) -> None:
        self.prepare_graphs()

    VIEW_NAMES = ("interaction", "feature", "kg")

    def view_names(self) -> list[str]:
        """Names of :meth:`views`' item views, in order (ablated ones left out)."""
        return [n for n, on in zip(self.VIEW_NAMES, (True, self.use_mm, self.use_kg)) if on]

    def forward(self) -> tuple[Tensor, Tensor, list[Tensor]]:
        bar_u, views = self.views()
        fused, weights = self.fusion(views)
        if not torch.is_grad_enabled():  # evaluation: kept for diagnostics() (no second forward)
            self._last_eval = (views, weights)
        return bar_u, fused, views

    def embeddings(self) -> tuple[Tensor, Tensor]:
        bar_u, fused, _ = self.forward()
        return bar_u, fused

    def diagnostics(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Each view alone (scored with x̄_u) and the fusion weight per view: its mean over items
        and its spread (std over items); from the forward that :meth:`embeddings` just ran."""
        if not self.view_diagnostics or self._last_eval is None:
            return {}, {}
        views, weights = self._last_eval
        self._last_eval = None
        if len(views) == 1:
            return {}, {}  # the only view is the model itself
        names = self.view_names()
        logs: dict[str, Tensor] = {}
        if weights is not None:  # (I, V)
            for k, name in enumerate(names):
                logs[f"val/fusion_weight/{name}"] = weights[:, k].mean()
                logs[f"val/fusion_weight_std/{name}"] = weights[:, k].std()
        return dict(zip(names, views)), logs

    @torch.no_grad()
    def item_representations(self) -> Tensor:
        """Fused x_i (I, d): what the self-loop callback builds its item-item graph from,
        computed in eval mode (whole graphs, exact KG attention)."""
        was_training = self.training
        self.eval()
        try:
            return self.forward()[1]
        finally:
            self.train(was_training)

    @torch.no_grad()
    def fusion_weights(self) -> Tensor | None:
        _, views = self.views()
        return self.fusion(views)[1]

    # -- loss ----------------------------------------------------------------------------------
    def consistency_ramp(self) -> float:
        """Weight on the consistency terms: 1, or a linear ramp over ``warmup_epochs`` (not in the
        paper: with tiny initial embeddings the cosine-based terms dominate Adam's early updates
        and stall BPR; the ramp lets BPR start first)."""
        w = int(self.cons["warmup_epochs"])
        if w <= 0 or self._trainer is None:
            return 1.0
        return min(1.0, (self.current_epoch + 1) / (w + 1))

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        u, p, n = batch["users"], batch["pos"], batch["neg"]
        bar_u, fused, views = self.forward()
        bu = rows(bar_u, u)  # (B, d)
        bpr = bpr_loss((bu * rows(fused, p)).sum(-1), (bu * rows(fused, n)).sum(-1))
        reg = l2_reg(self.user_emb(u), self.item_emb(p), self.item_emb(n))
        out = {"bpr": bpr, "reg": reg}
        total = bpr + self.reg_weight * reg
        if self.cons["enabled"]:
            items, keep = distinct_items(p)  # (B',), keep None; or (B,) sorted and (B,) bool on a GPU
            target = rows(fused, items)  # (B', d)
            stacked = torch.stack(views).index_select(1, items)  # (V, B', d): all views in one pass
            inter = inter_modal_loss(stacked, target, self.cons["tau"], self.cons["exclude_positive"], keep).sum()
            intra = uniformity_loss(stacked, self.cons["t"], keep).sum()
            ramp = self.consistency_ramp()
            total = total + ramp * (self.cons["beta"] * inter + self.cons["gamma"] * intra)
            out.update(inter=inter, intra=intra)
        out["loss"] = total
        return out

"""KGCL (Yang et al., SIGIR 2022, "Knowledge Graph Contrastive Learning for Recommendation"):
relation-aware KG aggregation into the item embeddings, KG augmentation whose per-item consistency
steers interaction-graph dropout, and contrastive learning across the two augmented views.

Follows the paper's Section 3 and the official release (github.com/yuh-yang/KGCL-SIGIR22,
``code/model.py``, ``contrast.py``, ``Procedure.py``, ``world.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from slifmr.errors import DataError
from slifmr.graphs.adjacency import bipartite_adjacency, sym_normalize
from slifmr.graphs.kg import SparsePattern, kg_propagate, segment_softmax
from slifmr.graphs.kg_ops import edge_relations
from slifmr.models.base import TOPK, RecModel, rows
from slifmr.models.encoders.interaction import propagate
from slifmr.models.losses import bpr_loss, l2_reg

LEAKY_SLOPE = 0.2  # the official GAT's alpha
KEEP_FLOOR = 0.3  # official get_ui_views_weighted: min-max consistency clipped below at 0.3
KEEP_CAP = 0.95  # ... and the keep probability capped at 0.95
NEGATIVES = ("all", "batch")


def kg_guided_keep_prob(consistency: Tensor, ui_drop: float) -> Tensor:
    """(I,) keep probability of each item in an interaction-graph view (official ``get_ui_views_weighted``).

    ``s = exp(c)``, min-max scaled to [0, 1], clipped below at 0.3, rescaled so its mean is
    ``1 - ui_drop``, capped at 0.95: items whose KG views agree (knowledge-consistent items)
    keep their interactions more often."""
    s = consistency.exp()
    span = s.max() - s.min()
    w = (s - s.min()) / span if float(span) > 0 else torch.ones_like(s)
    w = w.clamp_min(KEEP_FLOOR)
    return ((1.0 - ui_drop) * w / w.mean()).clamp_max(KEEP_CAP)


def _row_logsumexp(a: Tensor, c: Tensor, tau: float) -> Tensor:
    return torch.logsumexp(a @ c.T / tau, dim=1)


def info_nce(z1: Tensor, z2: Tensor, z2_all: Tensor, tau: float, chunk: int = 1024) -> Tensor:
    """Mean over the batch of ``-log exp(cos(z1_b, z2_b)/tau) / sum_j exp(cos(z1_b, z2_all_j)/tau)``
    (official ``info_nce_loss_overall``; a mean instead of its sum, like our BPR).

    z1, z2: (B, d) the same nodes in two views; z2_all: (M, d) the candidates of view 2. The
    (B, M) logits are built ``chunk`` rows at a time and recomputed in the backward (activation
    checkpointing): at Amazon-Book scale (B = 4096, M = 70k users) the whole matrix and its
    softmax would hold ~2 GB."""
    a, b, c = F.normalize(z1, dim=1), F.normalize(z2, dim=1), F.normalize(z2_all, dim=1)
    pos = (a * b).sum(-1) / tau  # (B,)
    if torch.is_grad_enabled() and a.shape[0] > chunk:
        lse = torch.cat([checkpoint(_row_logsumexp, a[i : i + chunk], c, tau, use_reentrant=False)
                         for i in range(0, a.shape[0], chunk)])
    else:
        lse = _row_logsumexp(a, c, tau)
    return (lse - pos).mean()


class KGCL(RecModel):
    """KGCL: LightGCN over the interaction graph whose item layer 0 is the relation-aware KG
    aggregation ``h_i = e_i + sum_{(i,r,t)} softmax_t(LeakyReLU((W [e_i | e_t] + b) · e_r)) e_t``
    (paper Eq. 1-2, official ``GraphAttentionLayer.forward_relation``).

    Per epoch (official ``Contrast.get_views``): two KG views drop each item-KG edge with
    ``kg_drop``; the per-item consistency ``c_i = cos(h_i^{view 1}, h_i^{view 2})`` gives the
    keep probability of :func:`kg_guided_keep_prob`; each interaction view keeps the interactions
    of a Bernoulli sample of items. Per step: BPR on the main model (interaction entries dropped
    with ``1 - ui_keep_prob``), plus ``cl_weight`` times the user and item InfoNCE between view 1
    (KG view 1 + interaction view 1) and view 2, plus ``reg_weight`` L2 on the batch's ego
    embeddings.

    Defaults and where they come from (official ``parse.py`` / ``world.py``, yelp2018 settings
    where the dataset decides): ``embedding_dim`` 64, ``n_layers`` 3, ``reg_weight`` 1e-4
    (``--decay``), ``gat_dropout`` 0.4 and LeakyReLU 0.2 (``GAT(dropout=0.4, alpha=0.2)``),
    ``kg_drop`` 0.5 (``kg_p_drop``), ``ui_drop`` 0.1 (``ui_p_drop``, yelp2018; amazon-book 0.05),
    ``ui_keep_prob`` 0.8 (``keep_prob`` with ``dropout=1``), ``tau`` 0.2 (``kgc_temp``),
    ``cl_weight`` 0.1 (``ssl_reg``), ``cl_negatives`` 'all' (every user / item of view 2 is a
    negative), embeddings N(0, 0.1) (``pretrain=0``), ``lr`` 1e-3 (``--lr``).

    Deviations: every KG edge of an item (inverse edges included) is aggregated with a segment
    softmax instead of 10 sampled neighbours per item (``entity_num_per_item``, a padding device);
    entities that are items share the item table (slifmr's convention) rather than a separate
    entity table; the consistency is computed without dropout; the official code's extra TransE
    epoch per epoch (``train_trans``) is not in the paper and is left out.
    """

    def __init__(
        self,
        meta: dict,
        embedding_dim: int = 64,
        n_layers: int = 3,
        reg_weight: float = 1e-4,
        gat_dropout: float = 0.4,
        kg_drop: float = 0.5,
        ui_drop: float = 0.1,
        ui_keep_prob: float = 0.8,
        tau: float = 0.2,
        cl_weight: float = 0.1,
        cl_negatives: str = "all",
        lr: float = 1e-3,
        topk=TOPK,
    ):
        super().__init__(meta, lr=lr, topk=topk)
        self.save_hyperparameters()
        if int(meta.get("n_entities", 0)) == 0:
            raise DataError("model=kgcl needs a knowledge graph (kg_final.txt / .kg triples) for its relation-aware "
                            "item aggregation and KG augmentation, but the dataset has none (meta n_entities = 0)")
        if cl_negatives not in NEGATIVES:
            raise ValueError(f"cl_negatives must be one of {NEGATIVES}, got '{cl_negatives}'")
        for name, v in (("kg_drop", kg_drop), ("ui_drop", ui_drop)):
            if not 0.0 <= v < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {v}")
        if not 0.0 < ui_keep_prob <= 1.0:
            raise ValueError(f"ui_keep_prob must lie in (0, 1], got {ui_keep_prob}")
        self.n_layers, self.reg_weight = n_layers, reg_weight
        self.kg_drop, self.ui_drop, self.ui_keep_prob = kg_drop, ui_drop, ui_keep_prob
        self.tau, self.cl_weight, self.cl_negatives = tau, cl_weight, cl_negatives
        self.n_entities = max(int(meta["n_entities"]), self.n_items)
        self.n_rel = 2 * int(meta["n_relations"])
        d = embedding_dim
        self.user_emb = nn.Embedding(self.n_users, d)
        self.item_emb = nn.Embedding(self.n_items, d)
        self.entity_emb = nn.Embedding(max(self.n_entities - self.n_items, 1), d)
        self.rel_emb = nn.Embedding(self.n_rel, d)
        for emb in (self.user_emb, self.item_emb, self.entity_emb, self.rel_emb):
            nn.init.normal_(emb.weight, std=0.1)
        self.att_fc = nn.Linear(2 * d, d)  # W, b of the relation-aware attention
        self.gat_dropout = nn.Dropout(gat_dropout)
        self._graphs: dict | None = None
        self._views: dict | None = None

    # -- graphs ------------------------------------------------------------------------------
    def item_kg(self) -> tuple[Tensor, Tensor, Tensor]:
        """(heads, tails, relations) of the KG edges whose head is an item (inverses included)."""
        self._graph_state()
        heads, tails, ptr, _ = self.graphs.kg_edges(self.device)
        cache = self._graphs["kg"].get(self.training)  # pruned (training) and whole (eval) versions
        if cache is None or cache[0] is not heads:
            rels = edge_relations(ptr.to(self.device), self.n_rel, "KGCL")
            keep = heads < self.n_items
            h, t, r = heads[keep], tails[keep], rels[keep]
            pattern = SparsePattern.build(h, t, (self.n_items, self.n_entities))
            self._graphs["kg"][self.training] = cache = (heads, (h, t, r, pattern))
        return cache[1]

    def _graph_state(self) -> dict:
        if self._graphs is None or self._graphs["store"] is not self.graphs or self._graphs["device"] != self.device:
            self._graphs = {"store": self.graphs, "device": self.device, "kg": {},
                            "ui": self.ui_graph(torch.ones(self.n_items, dtype=torch.bool))}
            self._views = None
        return self._graphs

    def ui_graph(self, item_keep: Tensor) -> tuple[Tensor, Tensor, Tensor, SparsePattern]:
        """(rows, cols, values, pattern) of the symmetric-normalised interaction graph restricted to
        the interactions of the kept items: (U+I, U+I), users first."""
        dev = self.device
        on = self.graphs.inputs(dev)  # the train interactions on the model's device: built there
        keep = item_keep.to(dev)[on["items"]]
        adj = sym_normalize(bipartite_adjacency(on["users"][keep], on["items"][keep], self.n_users, self.n_items))
        rows, cols = adj.indices()
        n = self.n_users + self.n_items
        return rows, cols, adj.values(), SparsePattern.build(rows, cols, (n, n))

    # -- model -------------------------------------------------------------------------------
    def subset(self, edges: tuple[Tensor, Tensor, Tensor, SparsePattern], keep: Tensor) -> tuple:
        """The edges with ``keep`` (E,) bool true, with their own pattern (a KG view)."""
        h, t, r, _ = edges
        h, t, r = h[keep], t[keep], r[keep]
        return h, t, r, SparsePattern.build(h, t, (self.n_items, self.n_entities))

    def item_kg_embedding(self, edges: tuple[Tensor, Tensor, Tensor, SparsePattern]) -> Tensor:
        """(I, d) ``h_i`` over the given item-KG edges (the whole item KG or a view of it).

        The score ``(W [e_i | e_t] + b) · e_r = (W_a e_i) · e_r + (W_b e_t) · e_r + b · e_r`` is
        gathered from (I, R) and (N, R) tables, so no |edges| x d tensor is built."""
        h, t, r, pattern = edges
        xi = self.gat_dropout(self.item_emb.weight)  # heads
        other = self.entity_emb.weight[: self.n_entities - self.n_items]
        xe = self.gat_dropout(torch.cat([self.item_emb.weight, other]))  # tails
        d = xi.shape[1]
        rel = self.rel_emb.weight  # (R, d)
        w_a, w_b = self.att_fc.weight[:, :d], self.att_fc.weight[:, d:]
        head_part = (xi @ w_a.T) @ rel.T  # (I, R)
        tail_part = (xe @ w_b.T) @ rel.T  # (N, R)
        n_rel = rel.shape[0]
        score = (head_part.reshape(-1).index_select(0, h * n_rel + r)
                 + tail_part.reshape(-1).index_select(0, t * n_rel + r) + (rel @ self.att_fc.bias).index_select(0, r))
        att = self.gat_dropout(segment_softmax(F.leaky_relu(score, LEAKY_SLOPE), h, self.n_items))
        agg = kg_propagate(h, t, att, xe, self.n_items, pattern=pattern)  # (I, d)
        return self.gat_dropout(agg + xi)

    def propagate(self, ui: tuple[Tensor, Tensor, Tensor, SparsePattern], item0: Tensor,
                  keep_prob: float = 1.0) -> tuple[Tensor, Tensor]:
        """LightGCN (mean of layers 0..L) from users' ID and the given item layer 0; entries of the
        graph dropped with ``1 - keep_prob`` and rescaled (official ``__dropout_x``)."""
        rows, cols, vals, pattern = ui
        if keep_prob < 1.0:
            vals = vals * (torch.rand(vals.numel(), device=vals.device) < keep_prob) / keep_prob
        x = torch.cat([self.user_emb.weight, item0])
        n = x.shape[0]
        out = propagate(lambda h: kg_propagate(rows, cols, vals, h, n, pattern=pattern), x, self.n_layers)
        return out[: self.n_users], out[self.n_users :]

    def embeddings(self) -> tuple[Tensor, Tensor]:
        state = self._graph_state()
        item0 = self.item_kg_embedding(self.item_kg())
        return self.propagate(state["ui"], item0, self.ui_keep_prob if self.training else 1.0)

    # -- augmentation ------------------------------------------------------------------------
    @torch.no_grad()
    def item_consistency(self, view1: tuple, view2: tuple) -> Tensor:
        """(I,) cosine between each item's KG aggregation under two KG views (no dropout)."""
        was = self.training
        self.eval()
        try:
            z1, z2 = self.item_kg_embedding(view1), self.item_kg_embedding(view2)
        finally:
            self.train(was)
        return F.cosine_similarity(z1, z2, dim=1)

    def build_views(self, epoch: int) -> dict:
        """The epoch's two (KG view, interaction view) pairs, seeded by (seed, epoch), drawn and
        built on the model's device (on the CPU: the same draws as a CPU generator's)."""
        self._graph_state()
        seed = int(getattr(self.graphs, "seed", 0))
        dev = self.device
        g = torch.Generator(device=dev).manual_seed((seed * 1_000_003 + epoch) * 7 + 5)
        edges = self.item_kg()
        kg_views = [self.subset(edges, torch.rand(edges[0].numel(), generator=g, device=dev) >= self.kg_drop)
                    for _ in range(2)]
        consistency = self.item_consistency(*kg_views)
        keep_prob = kg_guided_keep_prob(consistency, self.ui_drop)
        item_keep = [torch.bernoulli(keep_prob, generator=g).bool() for _ in range(2)]
        self._views = {"epoch": epoch, "edges": edges, "kg": kg_views, "ui": [self.ui_graph(k) for k in item_keep],
                       "items": item_keep,
                       "consistency": consistency}
        return self._views

    def on_train_epoch_start(self) -> None:
        self.build_views(self.current_epoch)

    # -- loss --------------------------------------------------------------------------------
    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        u, p, n = batch["users"], batch["pos"], batch["neg"]
        users, items = self.embeddings()
        bu = rows(users, u)  # (B, d)
        bpr = bpr_loss((bu * rows(items, p)).sum(-1), (bu * rows(items, n)).sum(-1))
        reg = l2_reg(self.user_emb(u), self.item_emb(p), self.item_emb(n))
        out = {"bpr": bpr, "reg": reg}
        total = bpr + self.reg_weight * reg
        if self.cl_weight > 0:
            epoch = self.current_epoch if self._trainer is not None else 0
            edges = self.item_kg()
            views = self._views
            if views is None or views["epoch"] != epoch or views["edges"] is not edges:
                views = self.build_views(epoch)
            (u1, i1), (u2, i2) = (self.propagate(ui, self.item_kg_embedding(kg))
                                  for ui, kg in zip(views["ui"], views["kg"]))
            u_all, i_all = (u2, i2) if self.cl_negatives == "all" else (rows(u2, u), rows(i2, p))
            cl_user = info_nce(rows(u1, u), rows(u2, u), u_all, self.tau)
            cl_item = info_nce(rows(i1, p), rows(i2, p), i_all, self.tau)
            total = total + self.cl_weight * (cl_user + cl_item)
            out.update(cl_user=cl_user, cl_item=cl_item)
        out["loss"] = total
        return out

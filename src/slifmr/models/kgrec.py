"""KGRec (Yang et al., KDD 2023, "Knowledge Graph Self-Supervised Rationalization for
Recommendation"): attentive rationale scores on KG triples, masked reconstruction of
high-rationale triples, and rationale-guided contrast between the interaction and KG views.

Follows the paper's Section 3 and the official release (github.com/HKUDS/KGRec,
``modules/KGRec.py``, ``modules/AttnHGCN.py``, ``modules/contrast.py``, ``utils/parser.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slifmr.errors import DataError
from slifmr.graphs.kg import SparsePattern, kg_propagate, segment_softmax
from slifmr.graphs.kg_ops import (edge_relations, edge_trilinear, interaction_entries, relational_aggregate,
                                  weighted_relational_aggregate)
from slifmr.models.base import TOPK, RecModel, rows
from slifmr.models.losses import bpr_loss, l2_reg


def rationale_scores(q: Tensor, rel_emb: Tensor, heads: Tensor, tails: Tensor, rels: Tensor, n_heads: int,
                     n_nodes: int) -> Tensor:
    """(E,) rationale score of each triple (paper Eq. 2-3, official ``norm_attn_computer``).

    The per-head logit ``q_h . (q_t ⊙ e_r) / sqrt(d/H)`` (``q = x W_Q``) is averaged over the H
    heads, soft-maxed over each head entity's triples and multiplied by the head's degree, so a
    score above 1 marks a triple more important than its head's average one."""
    dh = q.shape[1] // n_heads
    logits = edge_trilinear(q, q, rel_emb, heads, tails, rels, n_heads).mean(1) / math.sqrt(dh)  # (E,)
    deg = torch.bincount(heads, minlength=n_nodes).to(q.dtype)
    return segment_softmax(logits, heads, n_nodes) * deg.index_select(0, heads)


def gumbel_like(x: Tensor) -> Tensor:
    """Standard Gumbel noise ``-log(-log U)`` of ``x``'s shape (U kept off 0 and 1)."""
    u = torch.rand_like(x).clamp_(1e-10, 1 - 1e-7)
    return -torch.log(-torch.log(u))


def mask_top_rationale(noisy_scores: Tensor, n_mask: int) -> tuple[Tensor, Tensor]:
    """The masked triples (official ``_mae_edge_mask_adapt_mixed``): the ``n_mask`` edges of
    highest (Gumbel-perturbed) rationale plus ``n_mask`` uniformly drawn ones.

    Returns ``(mask (E,) bool, idx (2 n_mask,))``: ``idx`` lists both draws (an edge in both sets
    appears twice; a fixed length, so no host sync to find the mask's true entries)."""
    n = noisy_scores.numel()
    k = min(n_mask, n)
    idx = torch.cat([torch.topk(noisy_scores, k, sorted=False).indices,
                     torch.randperm(n, device=noisy_scores.device)[:k]])
    mask = torch.zeros(n, dtype=torch.bool, device=noisy_scores.device)
    mask[idx] = True
    return mask, idx


def masked_reconstruction_loss(ent: Tensor, rel_emb: Tensor, heads: Tensor, tails: Tensor, rels: Tensor) -> Tensor:
    """Mean over masked triples of ``-log sigmoid(e_h . (e_t ⊙ e_r))`` (paper Eq. 6, official
    ``create_mae_loss``) on the encoder's output entities ``ent`` (N, d)."""
    score = (rows(ent, heads) * rows(ent, tails) * rows(rel_emb, rels)).sum(-1)
    return F.softplus(-score).mean()


def kgrec_contrast(z1: Tensor, z2: Tensor, tau: float, perm: Tensor) -> Tensor:
    """Official ``Contrast.loss`` (mean over rows): ``-log p / (2p + n)`` with
    ``p = exp(cos(z1_i, z2_i)/tau)`` and ``n = exp(cos(z1_i, z2_perm_i)/tau) + exp(cos(z2_i, z1_perm_i)/tau)``,
    one shuffled negative per row and direction (z1, z2 already projected)."""
    a, b = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    pos = (a * b).sum(1) / tau
    neg1 = (a * rows(b, perm)).sum(1) / tau
    neg2 = (b * rows(a, perm)).sum(1) / tau
    denom = torch.logsumexp(torch.stack([pos + math.log(2.0), neg1, neg2]), dim=0)
    return (denom - pos).mean()


def _mlp(d: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))


class KGRec(RecModel):
    """KGRec: ``y_ui = e*_u . e*_i`` with ``e* = sum_{l=0..L} e^(l)`` from a relation-aware
    attentive KG aggregation (entities) and a mean over train items (users), each hop followed by
    message dropout and L2 normalisation (official ``AttnHGCN.forward``).

    Per training step (official ``KGRec.forward``):

    1. keep a random ``1 - node_dropout`` of the KG edges and of the interaction entries (the
       latter rescaled);
    2. rationale scores of the kept triples (:func:`rationale_scores`, no gradient), plus Gumbel
       noise;
    3. mask the ``mae_msize`` highest-scored triples and as many random ones; the encoder runs
       without them, and ``mae_coef`` times :func:`masked_reconstruction_loss` asks its output to
       reconstruct them;
    4. contrast: a KG view without the ``cl_drop`` lowest-scored triples (plain relational mean
       aggregation) against an interaction view that keeps ``1 - cl_drop`` of the interaction
       entries sampled without replacement with probability ``softmax(a_i + Gumbel)``, ``a_i`` the
       item's mean rationale (as head and as tail); :func:`kgrec_contrast` on every item after a
       2-layer MLP per view, weight ``cl_coef``;
    5. BPR on the main encoder plus ``reg_weight`` L2 on the final batch embeddings.

    Defaults and where they come from (official ``utils/parser.py`` ``parse_args_kgsr``, whose
    defaults are its last-fm settings; ``modules/KGRec.py`` overrides them per dataset):
    ``embedding_dim`` 64 (``--dim``), ``context_hops`` 2, ``n_heads`` 2 (``AttnHGCN.n_heads``),
    ``node_dropout`` 0.5 (``--node_dropout_rate``), ``mess_dropout`` 0.1, ``reg_weight`` 1e-5
    (``--l2``), ``mae_coef`` 0.1, ``mae_msize`` 256, ``cl_coef`` 0.01, ``tau`` 1.0 (``--cl_tau``),
    ``cl_drop`` 0.5 (``--cl_drop_ratio``); ``lr`` official 1e-4 (``--lr``), see conf/model/kgrec.yaml.

    Deviations: sampling without replacement with weights ``softmax(a + g1)`` is done as the top-k
    of ``a + g1 + g2`` (Gumbel-top-k, the same distribution, no sequential multinomial); the node
    dropout keeps a uniform half of all KG edges, not of each relation (the release's
    per-relation loop skips its last relation, an off-by-one we do not copy); the interaction
    dropout zeroes entries instead of removing them (the same products, a fixed sparsity pattern);
    the masked-reconstruction mean counts a triple drawn by both the top-k
    and the random draw twice (fixed-size index, no host sync); the interaction view samples among the entries that survived the dropout the expected count
    ``(1 - node_dropout)(1 - cl_drop) |R|`` (no host sync for the exact count). Items share the
    entity table (entity ``i`` is item ``i``), as everywhere in slifmr.

    Speed, measured 2026-11-27 on the shared 2-core VM (one thread, load average 4-6):

    * ``OMP_NUM_THREADS=1 python benchmarks/models_speed.py --models lightgcn,kgrec --threads 1
      --steps 4`` (Amazon-Book scale, 690k triples): 5.9 s/step, **7.0x LightGCN** per epoch (the
      same command on the code before the buffer change below: 5.6 s/step, 9.1x; LightGCN's own
      step moved 0.62 -> 0.84 s between the two runs with the load, so the ratios carry that
      noise). The 12.3x measured earlier ran at load 10-24 with two threads.
    * Profile (``OMP_NUM_THREADS=1 python benchmarks/profile_step.py --model kgrec``, medium set:
      20k users, 8k items, 450k KG edges with inverses, 225k kept by the node dropout, batch
      4,096): a step is 2.1-2.5 s against LightGCN's 0.11-0.14 s. Timed one by one (unprofiled)
      on the kept triples: the multi-head score ``q_h . (q_t ⊙ e_r)`` forward + backward 334 ms
      and the attention-weighted relational aggregation forward + backward 233 ms per attentive
      hop (two hops: 1.13 s), the KG view's mean-aggregation hop 151 ms (two: 0.30 s), the
      rationale scores 66 ms; message dropout's Bernoulli draws on the (N, d) tables ~0.17 s
      (profiler). All are gathers, elementwise products and scatter-adds over every kept triple
      (top profiler ops: ``index_select`` (65536, 64) chunks, ``scatter_add_``, ``mul``). They
      are the method: the official ``AttnHGCN`` scores every triple from both endpoints and its
      relation on every hop and backpropagates through those scores, where KGIN (2.8x LightGCN)
      only aggregates, and KGRec adds a second (KG-view) encoder for its contrast.
    * The one avoidable cost the profile showed -- a fresh 16 MB temporary for every chunk's
      gathers and products in the chunked edge ops -- is gone (``graphs/kg_ops.py`` reuses
      buffers; bit-for-bit the same values and gradients): an in-process A/B at Amazon-Book scale
      gave 4.99 -> 4.82 s/step (medians of 6 alternating steps each; -4 %, within the load's
      noise), 2.39 -> 2.14 s on the medium set.
    """

    def __init__(
        self,
        meta: dict,
        embedding_dim: int = 64,
        context_hops: int = 2,
        n_heads: int = 2,
        node_dropout: float = 0.5,
        mess_dropout: float = 0.1,
        reg_weight: float = 1e-5,
        mae_coef: float = 0.1,
        mae_msize: int = 256,
        cl_coef: float = 0.01,
        tau: float = 1.0,
        cl_drop: float = 0.5,
        lr: float = 1e-4,
        topk=TOPK,
    ):
        super().__init__(meta, lr=lr, topk=topk)
        self.save_hyperparameters()
        if int(meta.get("n_entities", 0)) == 0:
            raise DataError("model=kgrec needs a knowledge graph (kg_final.txt / .kg triples) for its rationale "
                            "scores and masked triple reconstruction, but the dataset has none (meta n_entities = 0)")
        for name, v in (("node_dropout", node_dropout), ("cl_drop", cl_drop)):
            if not 0.0 <= v < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {v}")
        if embedding_dim % n_heads:
            raise ValueError(f"embedding_dim {embedding_dim} must be divisible by n_heads {n_heads}")
        if context_hops < 1 or mae_msize < 0 or tau <= 0:
            raise ValueError(f"context_hops >= 1, mae_msize >= 0 and tau > 0 needed, got "
                             f"{context_hops}, {mae_msize}, {tau}")
        self.context_hops, self.n_heads = context_hops, n_heads
        self.node_dropout, self.reg_weight = node_dropout, reg_weight
        self.mae_coef, self.mae_msize = mae_coef, mae_msize
        self.cl_coef, self.tau, self.cl_drop = cl_coef, tau, cl_drop
        self.n_entities = max(int(meta["n_entities"]), self.n_items)
        self.n_rel = 2 * int(meta["n_relations"])
        d = embedding_dim
        self.init_id_embeddings(d)
        self.entity_emb = nn.Embedding(max(self.n_entities - self.n_items, 1), d)
        nn.init.xavier_uniform_(self.entity_emb.weight)
        self.rel_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_rel, d)))
        self.w_q = nn.Parameter(nn.init.xavier_uniform_(torch.empty(d, d)))
        self.proj_ui, self.proj_kg = _mlp(d), _mlp(d)  # official Contrast.mlp1 / mlp2
        self.mess_dropout = nn.Dropout(mess_dropout)
        self._ui: dict | None = None
        self._kg: tuple | None = None

    # -- graphs ------------------------------------------------------------------------------
    def interactions(self) -> dict:
        """Row-normalised train interactions (official ``mean_mat_list[0]``): entries ``(u, i)`` with
        value ``1/deg(u)``, as a (U, I) pattern and as a (U+I, U+I) bipartite one (both directions,
        the same values: the release's ``ui_agg``)."""
        if self._ui is None or self._ui["store"] is not self.graphs or self._ui["device"] != self.device:
            g = self.graphs
            ent = interaction_entries(g.train_users, g.train_items, self.n_users, self.n_items)
            u, i = ent["rows"], ent["cols"]
            vals = ent["deg"].clamp_min(1).float().reciprocal()[u]
            n = self.n_users + self.n_items
            dev = self.device
            self._ui = {"store": g, "device": dev, "rows": u.to(dev), "cols": i.to(dev), "vals": vals.to(dev),
                        "pattern": SparsePattern.build(u, i, (self.n_users, self.n_items)).to(dev),
                        "bi": SparsePattern.build(torch.cat([u, i + self.n_users]), torch.cat([i + self.n_users, u]),
                                                  (n, n)).to(dev)}
        return self._ui

    def kg(self) -> tuple[Tensor, Tensor, Tensor]:
        """(heads, tails, relations) of the store's KG view (inverse relations included)."""
        heads, tails, ptr, _ = self.graphs.kg_edges(self.device)
        if self._kg is None or self._kg[0] is not heads:
            self._kg = (heads, tails, edge_relations(ptr.to(self.device), self.n_rel, "KGRec"))
        return self._kg

    def entities0(self) -> Tensor:
        """(N, d) layer-0 entities: the item table, then the other entities."""
        return torch.cat([self.item_emb.weight, self.entity_emb.weight[: self.n_entities - self.n_items]])

    # -- encoders ----------------------------------------------------------------------------
    def encode(self, heads: Tensor, tails: Tensor, rels: Tensor, vals: Tensor,
               edge_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(users (U, d), entities (N, d)): sums of hops 0..L of the attentive encoder; the KG
        edges with ``edge_mask`` true take no part (their logits are -inf)."""
        ui = self.interactions()
        ent, usr = self.entities0(), self.user_emb.weight
        ent_sum, usr_sum = ent, usr
        dh = ent.shape[1] // self.n_heads
        for _ in range(self.context_hops):
            q = ent @ self.w_q
            logits = edge_trilinear(q, q, self.rel_emb, heads, tails, rels, self.n_heads) / math.sqrt(dh)  # (E, H)
            if edge_mask is not None:
                logits = logits.masked_fill(edge_mask.unsqueeze(1), float("-inf"))
            att = segment_softmax(logits, heads, self.n_entities)
            ent_agg = weighted_relational_aggregate(heads, tails, rels, att, ent, self.rel_emb, self.n_entities)
            usr_agg = kg_propagate(ui["rows"], ui["cols"], vals, ent[: self.n_items], self.n_users,
                                   pattern=ui["pattern"])
            ent = F.normalize(self.mess_dropout(ent_agg), dim=1)
            usr = F.normalize(self.mess_dropout(usr_agg), dim=1)
            ent_sum, usr_sum = ent_sum + ent, usr_sum + usr
        return usr_sum, ent_sum

    def encode_ui(self, vals: Tensor) -> Tensor:
        """(I, d) items of the interaction view (official ``forward_ui``): LightGCN-style hops over
        the interaction entries with weights ``vals`` in both directions, normalised, summed."""
        ui = self.interactions()
        x = torch.cat([self.user_emb.weight, self.item_emb.weight])
        acc = x[self.n_users :]
        w = torch.cat([vals, vals])
        n = self.n_users + self.n_items
        for _ in range(self.context_hops):
            x = F.normalize(self.mess_dropout(kg_propagate(None, None, w, x, n, pattern=ui["bi"])), dim=1)
            acc = acc + x[self.n_users :]
        return acc

    def encode_kg(self, heads: Tensor, tails: Tensor, rels: Tensor) -> Tensor:
        """(I, d) items of the KG view (official ``forward_kg``): relational mean aggregation."""
        ent = self.entities0()
        acc = ent
        for _ in range(self.context_hops):
            ent = F.normalize(self.mess_dropout(
                relational_aggregate(heads, tails, rels, ent, self.rel_emb, self.n_entities)), dim=1)
            acc = acc + ent
        return acc[: self.n_items]

    def embeddings(self) -> tuple[Tensor, Tensor]:
        heads, tails, rels = self.kg()
        users, ent = self.encode(heads, tails, rels, self.interactions()["vals"])
        return users, ent[: self.n_items]

    # -- training ----------------------------------------------------------------------------
    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        heads, tails, rels = self.kg()
        ui = self.interactions()
        vals = ui["vals"]
        keep_ui = 1.0 - self.node_dropout
        if self.node_dropout > 0:
            keep = torch.randperm(heads.numel(), device=heads.device)[: int(heads.numel() * keep_ui)]
            heads, tails, rels = rows(heads, keep), rows(tails, keep), rows(rels, keep)
            alive = torch.rand(vals.numel(), device=vals.device) < keep_ui
            vals = vals * alive / keep_ui
        else:
            alive = torch.ones_like(vals, dtype=torch.bool)
        with torch.no_grad():
            q = self.entities0() @ self.w_q
            score = rationale_scores(q, self.rel_emb, heads, tails, rels, self.n_heads, self.n_entities)
            # item rationale: mean score as head and as tail (1 where it has none), averaged
            ones = torch.ones_like(score)
            n = self.n_entities
            mean_h = torch.zeros(n, device=score.device).index_add_(0, heads, score) / \
                torch.zeros(n, device=score.device).index_add_(0, heads, ones).clamp_min(1)
            mean_t = torch.zeros(n, device=score.device).index_add_(0, tails, score) / \
                torch.zeros(n, device=score.device).index_add_(0, tails, ones).clamp_min(1)
            mean_h = torch.where(mean_h == 0, torch.ones_like(mean_h), mean_h)
            mean_t = torch.where(mean_t == 0, torch.ones_like(mean_t), mean_t)
            item_rationale = (0.5 * mean_h + 0.5 * mean_t)[: self.n_items]
            noisy = score + gumbel_like(score)
            masked, masked_idx = mask_top_rationale(noisy, self.mae_msize)

        users, ent = self.encode(heads, tails, rels, vals, edge_mask=masked)
        u, p, n_ = rows(users, batch["users"]), rows(ent, batch["pos"]), rows(ent, batch["neg"])
        bpr = bpr_loss((u * p).sum(-1), (u * n_).sum(-1))
        reg = l2_reg(u, p, n_)
        total = bpr + self.reg_weight * reg
        out = {"bpr": bpr, "reg": reg}
        if self.mae_coef > 0 and self.mae_msize > 0:
            idx = masked_idx
            mae = masked_reconstruction_loss(ent, self.rel_emb, rows(heads, idx), rows(tails, idx), rows(rels, idx))
            total = total + self.mae_coef * mae
            out["mae"] = mae
        if self.cl_coef > 0:
            with torch.no_grad():
                k_kg = max(int(heads.numel() * (1.0 - self.cl_drop)), 1)
                kg_keep = torch.topk(noisy, k_kg, sorted=False).indices
                key = rows(item_rationale, ui["cols"]) + gumbel_like(vals) + gumbel_like(vals)
                key = key.masked_fill(~alive, float("-inf"))
                k_ui = max(int(vals.numel() * keep_ui * (1.0 - self.cl_drop)), 1)
                ui_keep = torch.topk(key, k_ui, sorted=False).indices
            cl_vals = torch.zeros_like(vals).index_copy(0, ui_keep, rows(vals, ui_keep) / (1.0 - self.cl_drop))
            z_ui = self.encode_ui(cl_vals)
            z_kg = self.encode_kg(rows(heads, kg_keep), rows(tails, kg_keep), rows(rels, kg_keep))
            perm = torch.randperm(self.n_items, device=z_ui.device)
            cl = kgrec_contrast(self.proj_ui(z_ui), self.proj_kg(z_kg), self.tau, perm)
            total = total + self.cl_coef * cl
            out["cl"] = cl
        out["loss"] = total
        return out

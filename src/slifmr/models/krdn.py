"""KRDN (Zhu et al., SIGIR 2023, "Knowledge-refined Denoising Network for Robust Recommendation"):
adaptive pruning of KG triples with learned per-triple Bernoulli gates, and contrastive denoising
of implicit feedback (interactions on which the knowledge and collaborative views disagree are
pruned from the user aggregation and down-weighted in the loss).

Follows the paper's Section 3 and the official release (github.com/xj-zhu98/KRDN,
``modules/KRDN.py``, ``utils/parser.py``, README commands).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slifmr.errors import DataError
from slifmr.graphs.kg import SparsePattern, kg_propagate, segment_softmax
from slifmr.graphs.kg_ops import edge_bilinear, edge_relations, interaction_entries, weighted_relational_aggregate
from slifmr.models.base import TOPK, RecModel, rows


def disarm_gradient(logits: Tensor, first: Tensor, second: Tensor, loss_first: Tensor,
                    loss_second: Tensor) -> Tensor:
    """DisARM estimate of ``d E_{b ~ Bern(sigmoid(logits))}[loss(b)] / d logits`` from one antithetic
    pair (``first = u > sigmoid(-logits)``, ``second = u < sigmoid(logits)``, one ``u ~ U(0,1)``):
    ``0.5 (loss(first) - loss(second)) (first - second) max(sigmoid(logits), sigmoid(-logits))``
    (official ``Recommender.forward``; Dong et al., NeurIPS 2020)."""
    a1, a2 = torch.sigmoid(logits), torch.sigmoid(-logits)
    return 0.5 * (loss_first - loss_second) * (first.to(logits.dtype) - second.to(logits.dtype)) * torch.maximum(a1, a2)


def antithetic_gates(logits: Tensor) -> tuple[Tensor, Tensor]:
    """(first, second) bool gates of the same uniform draw (official ``generate_b``)."""
    u = torch.rand_like(logits)
    return u > torch.sigmoid(-logits), u < torch.sigmoid(logits)


def adam_update(param: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, step: Tensor, lr: float,
                betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
    """One Adam step (torch.optim.Adam's defaults, no weight decay), in place on ``param`` and its
    moments. The gates' optimiser (official ``optimizer_stru``) lives in buffers so that a checkpoint
    carries its moments and step count and a resumed run steps exactly as the uninterrupted one;
    ``step`` is a 0-d int64 tensor (no host sync to read it)."""
    b1, b2 = betas
    step.add_(1)
    exp_avg.mul_(b1).add_(grad, alpha=1 - b1)
    exp_avg_sq.mul_(b2).addcmul_(grad, grad, value=1 - b2)
    t = step.to(torch.float64)  # bias corrections in double, as torch's Adam computes them on the host
    bias1 = 1 - b1 ** t  # 0-d tensors
    bias2 = 1 - b2 ** t
    denom = (exp_avg_sq.sqrt() / bias2.sqrt()).add_(eps)
    param.sub_(exp_avg / denom * (lr / bias1))


def agreement_mask(p_kg: Tensor, p_cf: Tensor, gamma: float) -> Tensor:
    """(E,) bool: interactions kept by the denoising rule ``|sigmoid(p_kg) - sigmoid(p_cf)| < gamma``
    on the per-user softmax-normalised KG-side and CF-side affinities (official ``Aggregator``)."""
    return (torch.sigmoid(p_kg) - torch.sigmoid(p_cf)).abs() < gamma


def ccl_loss(u: Tensor, pos: Tensor, neg: Tensor, pos_weight: Tensor, margin: float) -> Tensor:
    """Cosine contrastive loss (official ``create_contrastive_loss``): per row
    ``w * relu(1 - cos(u, p)) + sum_k relu(cos(u, n_k) - margin) / (#{k: cos(u, n_k) > margin} + 1e-5)``,
    mean over rows. u, pos: (B, d); neg: (B, K) cosines already computed; pos_weight (B,)."""
    pos_term = F.relu(1.0 - F.cosine_similarity(u, pos, dim=1)) * pos_weight
    neg_hinge = F.relu(neg - margin)
    neg_term = neg_hinge.sum(1) / ((neg_hinge > 0).sum(1) + 1e-5)
    return (pos_term + neg_term).mean()


class KRDN(RecModel):
    """KRDN: two encoders over shared graphs, scored by ``cos(u_kg, i_kg) + cos(u_cf, i_cf)``
    (official ``rating`` with ``loss_f = contrastive_loss``).

    Per hop ``l`` (official ``Aggregator``), over the KG edges whose gates ``b_1 & ... & b_l`` are on:

    - entities: ``LeakyReLU(W1 mean(e_t ⊙ e_r)) / 2`` over *cross* triples (exactly one end an
      item) plus ``LeakyReLU(W2 mean(e_t + e_r)) / 2`` over the others;
    - users, knowledge side: ``u = sum_i p_ui [keep_ui] e_i`` with ``p = softmax_u(sigmoid((u ⊙ r_i) . e_i))``,
      ``r_i`` the mean relation embedding of the item's triples; collaborative side likewise with
      ``p_cf = softmax_u(sigmoid(u_cf . i_cf))``; an interaction is kept only where the two sides
      agree (:func:`agreement_mask`); ``max_iter`` routing iterations;
    - items, collaborative side: mean of their users' CF embeddings;
    - message dropout, L2 normalisation, sum over hops.

    The KG gates: per hop and triple a logit ``theta`` (init ``logit(U(0.5, 1))``), trained by its
    own Adam (``struct_lr``) with the DisARM estimator (:func:`disarm_gradient`) from two extra
    gradient-free forward passes per step; the network trains on a third pass with
    ``b ~ Bern(sigmoid(theta))``. Loss: :func:`ccl_loss` on each side with ``n_negatives``
    uniform negatives per row, the positive term weighted by the interaction's last agreement
    (1 or 0, a memory bank over the train interactions).

    Defaults and where they come from (official ``utils/parser.py``; README's yelp2018 command,
    the parser's default dataset): ``embedding_dim`` 64, ``context_hops`` 2, ``gamma`` 0.2,
    ``max_iter`` 1, ``node_dropout`` 0.5 (half of the interactions per step), ``mess_dropout`` 0.1,
    ``n_negatives`` 400 (``--num_neg_sample``), ``margin`` 0.8, ``struct_lr`` 1e-4
    (``optimizer_stru``); ``lr`` official 1e-4, see conf/model/krdn.yaml. ``--l2`` only enters the
    release's ``inner_bpr`` loss, not the contrastive loss it uses, so it is not a knob here.

    Deviations: the gates step *down* the DisARM estimate of the loss gradient (the release
    assigns its negative as the gradient, an ascent on the training loss); evaluation keeps the
    triples with ``sigmoid(theta) > 0.5`` on every hop (the release samples the gates once more
    at test time, so its rankings are random); negatives are drawn uniformly over all items
    without rejecting the user's train items (the release rejects them, per user in Python), and
    one draw of ``n_negatives`` items serves every row of the batch (each row still sees K uniform
    items; the (B, K) cosines are one matmul: per-row draws, B x K gathers, took ~60 s per step on
    ml-100k-kg-tiny on the shared 2-core CPU);
    the interaction dropout is a Bernoulli(0.5) mask per step rather than an exact half; the gates
    live on the store's whole KG (the dataset's own KG pruning is not applied: per-triple
    parameters need a fixed triple list).

    Speed (``python benchmarks/models_speed.py --smoke --models lightgcn,kgin,kgrec,krdn,kacl --steps 3
    --threads 1``, 2,000 users / 1,000 items / 32k interactions / 20k triples, measured once on the
    shared, heavily loaded 2-core machine): 84 s per epoch, **14x LightGCN** (KGIN 2.7x). Measured
    reason: every step runs the whole two-sided encoder three times (the two gradient-free
    antithetic passes DisARM needs to estimate the gates' gradient, then the training pass), and
    each pass aggregates every KG triple and scores every interaction twice (knowledge and
    collaborative affinities, per-user softmaxes); one pass alone is ~5x LightGCN, like KGIN's
    relational aggregation plus the denoising scores. At Amazon-Book scale (``python benchmarks/models_speed.py --models lightgcn,kgrec,krdn,kacl --steps 2 --threads 2``,
    synthetic, one measurement at load 10-24, only the ratio means anything): 171.5 s/step,
    **25.6x LightGCN** (KACL 3.3x, KGRec 12.3x, peak 4.2 GB): the same three passes over ~690k triples.
    Profile check (2026-11-27, ``OMP_NUM_THREADS=1 python benchmarks/profile_step.py --model krdn``,
    medium synthetic set: 20k users, 8k items, 450k KG edges with inverses, batch 4,096, load ~4):
    3.45 s/step against LightGCN's 0.11-0.14 s. Per step the chunked edge ops run 3x forward and
    1x backward, as the reason above says: ``weighted_relational_aggregate`` 6 forwards (3 passes x
    2 hops) and 2 backwards, ``edge_trilinear`` 12 forwards (3 passes x 2 hops x the knowledge and
    collaborative scores; ``edge_bilinear`` since, 0.83x the step: benchmarks/README.md) and 4 backwards;
    together 2.47 s of the 4.0 s profiled step (62 %),
    message dropout's Bernoulli draws 0.36 s (9 %), the interaction propagation 0.40 s.
    Re-measured the same day, one thread, load 4-5 (``OMP_NUM_THREADS=1 python
    benchmarks/models_speed.py --models lightgcn,krdn --threads 1 --steps 3``, Amazon-Book scale,
    after ``kg_ops`` began reusing its chunk buffers): 8.9 s/step, **15.8x LightGCN** -- still over
    the 10x budget for the reason above (two of the three passes exist only for the DisARM gate
    gradient).
    """

    def __init__(
        self,
        meta: dict,
        embedding_dim: int = 64,
        context_hops: int = 2,
        gamma: float = 0.2,
        max_iter: int = 1,
        node_dropout: float = 0.5,
        mess_dropout: float = 0.1,
        n_negatives: int = 400,
        margin: float = 0.8,
        struct_lr: float = 1e-4,
        lr: float = 1e-4,
        topk=TOPK,
    ):
        super().__init__(meta, lr=lr, topk=topk)
        self.save_hyperparameters()
        if int(meta.get("n_entities", 0)) == 0:
            raise DataError("model=krdn needs a knowledge graph (kg_final.txt / .kg triples) for its adaptive "
                            "triple pruning and knowledge-side user aggregation, but the dataset has none "
                            "(meta n_entities = 0)")
        if not 0.0 <= node_dropout < 1.0:
            raise ValueError(f"node_dropout must lie in [0, 1), got {node_dropout}")
        if context_hops < 1 or max_iter < 1 or n_negatives < 1:
            raise ValueError(f"context_hops, max_iter and n_negatives must be >= 1, got "
                             f"{context_hops}, {max_iter}, {n_negatives}")
        self.context_hops, self.gamma, self.max_iter = context_hops, gamma, max_iter
        self.node_dropout, self.n_negatives, self.margin = node_dropout, n_negatives, margin
        self.struct_lr = struct_lr
        self.n_entities = max(int(meta["n_entities"]), self.n_items)
        self.n_rel = 2 * int(meta["n_relations"])
        d = embedding_dim
        self.init_id_embeddings(d)  # knowledge side: users and items (entities 0..I-1)
        self.entity_emb = nn.Embedding(max(self.n_entities - self.n_items, 1), d)
        self.cf_user_emb = nn.Embedding(self.n_users, d)
        self.cf_item_emb = nn.Embedding(self.n_items, d)
        for emb in (self.entity_emb, self.cf_user_emb, self.cf_item_emb):
            nn.init.xavier_uniform_(emb.weight)
        self.rel_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_rel, d)))
        self.w_cross = nn.ModuleList(nn.Linear(d, d) for _ in range(context_hops))  # official W1
        self.w_same = nn.ModuleList(nn.Linear(d, d) for _ in range(context_hops))  # official W2
        self.mess_dropout = nn.Dropout(mess_dropout)
        self.register_buffer("gate_logits", torch.zeros(context_hops, 0))  # sized on the first KG read
        self.register_buffer("bank", torch.ones(0))  # last agreement of each train interaction
        # the gates' Adam state (adam_update): moments (hops, E) and step count, checkpointed
        self.register_buffer("gate_exp_avg", torch.zeros(context_hops, 0))
        self.register_buffer("gate_exp_avg_sq", torch.zeros(context_hops, 0))
        self.register_buffer("gate_step", torch.zeros((), dtype=torch.long))
        self._graphs: dict | None = None

    # -- graphs ------------------------------------------------------------------------------
    def graph_state(self) -> dict:
        """The whole KG (edges, cross flags, patterns) and the interaction entries, built once."""
        if self._graphs is None or self._graphs["store"] is not self.graphs or self._graphs["device"] != self.device:
            g, dev = self.graphs, self.device
            kg = g.kg_edges(dev, prune=False)
            heads, tails, ptr, _ = kg
            rels = edge_relations(ptr.to(dev), self.n_rel, "KRDN")
            ui = {k: v.to(dev) for k, v in interaction_entries(g.train_users, g.train_items, self.n_users,
                                                                 self.n_items).items()}
            r, c = ui["rows"].cpu(), ui["cols"].cpu()
            self._graphs = {
                "store": g, "device": dev, "heads": heads, "tails": tails, "rels": rels,
                "cross": (heads < self.n_items) ^ (tails < self.n_items),
                "adj": kg.structure.adjacency,  # (N, N) heads x tails, items = edges in order
                "hr": SparsePattern.build(heads, rels, (self.n_entities, self.n_rel)).to(dev),
                "ui": ui, "ui_pattern": SparsePattern.build(r, c, (self.n_users, self.n_items)).to(dev),
                "iu_pattern": SparsePattern.build(c, r, (self.n_items, self.n_users)).to(dev),
            }
            n_edges, n_inter = heads.numel(), ui["rows"].numel()
            if self.gate_logits.shape[1] != n_edges:
                u = torch.empty(self.context_hops, n_edges, device=dev).uniform_(0.5, 1.0)
                self.gate_logits = torch.log((u + 1e-7) / (1 - u + 1e-7))  # official init
                self.gate_exp_avg = torch.zeros_like(self.gate_logits)
                self.gate_exp_avg_sq = torch.zeros_like(self.gate_logits)
                self.gate_step = torch.zeros((), dtype=torch.long, device=dev)
            if self.bank.numel() != n_inter:
                self.bank = torch.ones(n_inter, device=dev)
        return self._graphs

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before the gates' Adam state was checkpointed restart it from zero,
        # which is what those runs did on resume
        logits = state_dict.get(prefix + "gate_logits")
        if logits is not None and prefix + "gate_step" not in state_dict:
            state_dict[prefix + "gate_exp_avg"] = torch.zeros_like(logits)
            state_dict[prefix + "gate_exp_avg_sq"] = torch.zeros_like(logits)
            state_dict[prefix + "gate_step"] = torch.zeros((), dtype=torch.long)
        # the gates, their moments and the bank are sized by the data: take the checkpoint's sizes
        for name in ("gate_logits", "gate_exp_avg", "gate_exp_avg_sq", "bank"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- encoder -----------------------------------------------------------------------------
    def _mean_weights(self, segment: Tensor, keep: Tensor, n: int) -> Tensor:
        """(E,) ``keep / #kept edges of the segment``: a masked mean as edge weights."""
        w = keep.to(self.user_emb.weight.dtype)
        deg = torch.zeros(n, dtype=w.dtype, device=w.device).index_add_(0, segment, w)
        return w / deg.clamp_min(1.0).index_select(0, segment)

    def kg_hop(self, hop: int, ent: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
        """One KG hop over the kept triples: (entities (N, d), mean relation per head (N, d))."""
        st = self._graphs
        heads, tails, rels, n = st["heads"], st["tails"], st["rels"], self.n_entities
        w_cross = self._mean_weights(heads, keep & st["cross"], n)
        w_same = self._mean_weights(heads, keep & ~st["cross"], n)
        cross = weighted_relational_aggregate(heads, tails, rels, w_cross, ent, self.rel_emb, n)
        same = (kg_propagate(heads, tails, w_same, ent, n, pattern=st["adj"])
                + kg_propagate(heads, rels, w_same, self.rel_emb, n, pattern=st["hr"]))
        agg = (F.leaky_relu(self.w_cross[hop](cross)) + F.leaky_relu(self.w_same[hop](same))) / 2
        rel_mean = kg_propagate(heads, rels, self._mean_weights(heads, keep, n), self.rel_emb, n, pattern=st["hr"])
        return agg, rel_mean

    def user_hop(self, usr: Tensor, usr_cf: Tensor, item_kg: Tensor, item_cf: Tensor, rel_item: Tensor,
                 alive: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(users kg (U, d), users cf (U, d), agreement (E_ui,) bool) of one hop's denoised aggregation."""
        st = self._graphs
        rows, cols, pat = st["ui"]["rows"], st["ui"]["cols"], st["ui_pattern"]
        u, ucf = usr, usr_cf
        item_side = rel_item * item_kg  # (I, d): the item factors of u . (r ⊙ i), gathered once per edge
        for it in range(self.max_iter):
            s_kg = torch.sigmoid(edge_bilinear(u, item_side, rows, cols))
            s_cf = torch.sigmoid(edge_bilinear(ucf, item_cf, rows, cols))
            dead = torch.full_like(s_kg, float("-inf"))
            p = segment_softmax(torch.where(alive, s_kg, dead), rows, self.n_users)
            pcf = segment_softmax(torch.where(alive, s_cf, dead), rows, self.n_users)
            agree = agreement_mask(p, pcf, self.gamma) & alive
            w = agree.to(p.dtype)
            u = kg_propagate(rows, cols, p * w, item_kg, self.n_users, pattern=pat)
            ucf = kg_propagate(rows, cols, pcf * w, item_cf, self.n_users, pattern=pat)
            if it < self.max_iter - 1:
                u, ucf = F.normalize(u, dim=1), F.normalize(ucf, dim=1)
        return u, ucf, agree

    def encode(self, gates: Tensor, alive: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(users kg, items kg, users cf, items cf, last hop's agreement) with KG gates (hops, E)
        and the interaction entries ``alive`` (E_ui,) bool; sums of hops 0..L."""
        st = self.graph_state()
        rows, cols = st["ui"]["rows"], st["ui"]["cols"]
        ent = torch.cat([self.item_emb.weight, self.entity_emb.weight[: self.n_entities - self.n_items]])
        usr, usr_cf, item_cf = self.user_emb.weight, self.cf_user_emb.weight, self.cf_item_emb.weight
        acc = [ent, usr, usr_cf, item_cf]
        keep = torch.ones_like(gates[0], dtype=torch.bool)
        w_items = self._mean_weights(cols, alive, self.n_items)  # CF items: mean of their kept users
        agree = alive
        for hop in range(self.context_hops):
            keep = keep & gates[hop]
            ent_next, rel_mean = self.kg_hop(hop, ent, keep)
            usr, usr_cf_next, agree = self.user_hop(usr, usr_cf, ent[: self.n_items], item_cf,
                                                    rel_mean[: self.n_items], alive)
            item_cf = kg_propagate(cols, rows, w_items, usr_cf, self.n_items, pattern=st["iu_pattern"])
            ent, usr_cf = ent_next, usr_cf_next
            outs = [ent, usr, usr_cf, item_cf]
            outs = [F.normalize(self.mess_dropout(x), dim=1) for x in outs]
            ent, usr, usr_cf, item_cf = outs
            acc = [a + x for a, x in zip(acc, outs)]
        return acc[1], acc[0][: self.n_items], acc[2], acc[3], agree

    def eval_gates(self) -> Tensor:
        self.graph_state()
        return self.gate_logits > 0  # sigmoid > 0.5

    def embeddings(self) -> tuple[Tensor, Tensor]:
        st = self.graph_state()
        alive = torch.ones_like(st["ui"]["rows"], dtype=torch.bool)
        u_kg, i_kg, u_cf, i_cf, _ = self.encode(self.eval_gates(), alive)
        # cos + cos as one dot product of concatenated unit vectors
        return (torch.cat([F.normalize(u_kg, dim=1), F.normalize(u_cf, dim=1)], 1),
                torch.cat([F.normalize(i_kg, dim=1), F.normalize(i_cf, dim=1)], 1))

    # -- training ----------------------------------------------------------------------------
    def pass_loss(self, gates: Tensor, alive: Tensor, batch: dict[str, Tensor], negs: Tensor,
                  entry: Tensor) -> Tensor:
        """One forward pass with the given gates: both sides' CCL against the (K,) negative items
        ``negs``; updates the agreement bank."""
        u_kg, i_kg, u_cf, i_cf, agree = self.encode(gates, alive)
        self.bank = torch.where(alive, agree.to(self.bank.dtype), self.bank)
        w = self.bank.index_select(0, entry)
        u, p = batch["users"], batch["pos"]
        total = 0.0
        for users, items in ((u_kg, i_kg), (u_cf, i_cf)):
            bu = rows(users, u)  # (B, d)
            neg_cos = F.normalize(bu, dim=1) @ F.normalize(rows(items, negs), dim=1).T  # (B, K)
            total = total + ccl_loss(bu, rows(items, p), neg_cos, w, self.margin)
        return total

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        st = self.graph_state()
        ui = st["ui"]
        alive = torch.rand(ui["rows"].numel(), device=self.device) >= self.node_dropout
        entry = torch.searchsorted(ui["keys"], batch["users"] * self.n_items + batch["pos"])
        negs = torch.randint(0, self.n_items, (self.n_negatives,), device=self.device)  # shared by the batch
        theta = self.gate_logits
        first, second = antithetic_gates(theta)
        with torch.no_grad():
            loss_first = self.pass_loss(first, alive, batch, negs, entry)
            loss_second = self.pass_loss(second, alive, batch, negs, entry)
        if self.training and torch.is_grad_enabled():
            grad = disarm_gradient(theta, first, second, loss_first, loss_second)
            adam_update(theta, grad, self.gate_exp_avg, self.gate_exp_avg_sq, self.gate_step, self.struct_lr)
        gates = torch.bernoulli(torch.sigmoid(self.gate_logits)).bool()
        total = self.pass_loss(gates, alive, batch, negs, entry)
        kept = gates.float().mean(1)  # (hops,) share of triples gated on
        return {"loss": total, "ccl": total.detach(), "gates_on": kept.mean()}

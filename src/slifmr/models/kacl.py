"""KACL (Wang et al., WSDM 2023, "Knowledge-Adaptive Contrastive Learning for Recommendation"):
an interaction view and a KG view, each augmented by a learnable view generator that softly
removes task-irrelevant edges, contrasted with each other; a plain interaction encoder and a
DistMult KG loss complete it.

No official release could be read here (the searchable index holds no KACL repository of the
authors); the structure follows the paper's Section 3 and the OpenHGNN port
(``openhgnn/models/KACL.py``: ``KACL``, ``myGATConv``, ``DropLearner``, ``Contrast_2view``,
``DistMult``), whose hyper-parameters come from a config file we could not read. Where a default
has no source it is marked as ours in the config.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slifmr.errors import DataError
from slifmr.graphs.kg import SparsePattern, kg_propagate, segment_softmax
from slifmr.graphs.kg_ops import edge_relations, head_index, sample_kg_triples
from slifmr.models.base import TOPK, RecModel, rows
from slifmr.models.losses import bpr_loss, l2_reg

GATE_BIAS = 1e-4  # DropLearner: eps ~ U(bias, 1 - bias), "if bias is 0, we run into problems"


def concrete_gates(logits: Tensor, temperature: float, noise: Tensor | None = None) -> Tensor:
    """(E,) soft keep-gates of the view generator (official ``DropLearner``, a binary concrete
    relaxation): ``sigmoid((log eps - log(1 - eps) + logits) / temperature)``, ``eps ~ U(b, 1 - b)``.
    ``noise`` (E,): the eps draw (default: drawn here)."""
    eps = noise if noise is not None else torch.rand_like(logits) * (1 - 2 * GATE_BIAS) + GATE_BIAS
    return torch.sigmoid((torch.log(eps) - torch.log(1 - eps) + logits) / temperature)


def view_contrast(z1: Tensor, z2: Tensor, tau: float) -> Tensor:
    """Mean over rows of ``-log softmax_j(cos(z1_i, z2_j) / tau)[i]`` (official ``Contrast_2view.sim``
    with the identity as positives): each item's interaction-view vector should pick out its own
    KG-view vector among the batch's. z1, z2: (B, d) after projection."""
    logits = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T / tau  # (B, B)
    return (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean()


class _Graph:
    """Edges ``src -> dst`` (self-loops included) and the (dst x src) pattern aggregating them."""

    def __init__(self, src: Tensor, dst: Tensor, n: int, device: torch.device):
        loops = torch.arange(n)
        self.src = torch.cat([src.cpu(), loops]).to(device)
        self.dst = torch.cat([dst.cpu(), loops]).to(device)
        self.n = n
        self.pattern = SparsePattern.build(self.dst.cpu(), self.src.cpu(), (n, n)).to(device)


class GATLayer(nn.Module):
    """One single-head GAT layer (official ``myGATConv`` with one head and no residual attention):
    ``h'_v = act(sum_{u -> v} a_uv g_uv W h_u + res(h_v) + b)``, ``a = softmax_v(LeakyReLU(a_l . W h_u + a_r . W h_v))``,
    ``g`` the view generator's gates (1 without)."""

    def __init__(self, dim: int, residual: bool, activation: bool, negative_slope: float, feat_drop: float,
                 attn_drop: float):
        super().__init__()
        gain = nn.init.calculate_gain("relu")
        self.fc = nn.Linear(dim, dim, bias=False)
        nn.init.xavier_normal_(self.fc.weight, gain=gain)
        self.attn_l = nn.Parameter(nn.init.xavier_normal_(torch.empty(1, dim), gain=gain))
        self.attn_r = nn.Parameter(nn.init.xavier_normal_(torch.empty(1, dim), gain=gain))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.residual, self.activation, self.negative_slope = residual, activation, negative_slope
        self.feat_drop, self.attn_drop = nn.Dropout(feat_drop), nn.Dropout(attn_drop)

    def forward(self, g: _Graph, h: Tensor, gates: Tensor | None = None) -> Tensor:
        x = self.feat_drop(h)
        z = self.fc(x)  # (N, d)
        el, er = (z * self.attn_l).sum(1), (z * self.attn_r).sum(1)  # (N,)
        score = F.leaky_relu(el.index_select(0, g.src) + er.index_select(0, g.dst), self.negative_slope)
        a = self.attn_drop(segment_softmax(score, g.dst, g.n))
        if gates is not None:
            a = a * gates
        out = kg_propagate(g.dst, g.src, a, z, g.n, pattern=g.pattern)
        if self.residual:
            out = out + x
        out = out + self.bias
        return F.elu(out) if self.activation else out


class GATEncoder(nn.Module):
    """``n_layers`` GAT layers (the first without residual, the last without activation, as the
    port's input / hidden / output layers); readout: the L2-normalised layer-0 input and every
    layer's output, concatenated (official ``calc_*_emb``)."""

    def __init__(self, dim: int, n_layers: int, negative_slope: float, feat_drop: float, attn_drop: float):
        super().__init__()
        self.layers = nn.ModuleList(
            GATLayer(dim, residual=i > 0, activation=i < n_layers - 1, negative_slope=negative_slope,
                     feat_drop=feat_drop, attn_drop=attn_drop) for i in range(n_layers))

    def forward(self, g: _Graph, h: Tensor, gates: Tensor | None = None) -> Tensor:
        outs = [F.normalize(h, dim=1)]
        for layer in self.layers:
            h = layer(g, h, gates)
            outs.append(F.normalize(h, dim=1))
        return torch.cat(outs, 1)  # (N, d (L+1))


class ViewGenerator(nn.Module):
    """Edge logits ``mlp_src(x_u) + mlp_dst(x_v)`` (official ``DropLearner``, ``concat=False``)."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.src = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.dst = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, g: _Graph, x: Tensor) -> Tensor:
        return self.src(x).squeeze(1).index_select(0, g.src) + self.dst(x).squeeze(1).index_select(0, g.dst)


def _projection(d_in: int, d_out: int) -> nn.Sequential:
    proj = nn.Sequential(nn.Linear(d_in, d_out), nn.ELU(), nn.Linear(d_out, d_out))
    for m in proj:
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight, gain=1.414)
    return proj


class KACL(RecModel):
    """KACL: ``y_ui`` = dot product of ``[cf | cl | kg]`` representations, where

    - ``cf``: a GAT encoder over the whole interaction graph (users and items, own ID table);
    - ``cl``: a second GAT encoder over the interaction graph whose attention is multiplied by the
      soft gates of a learnable view generator (:func:`concrete_gates`, its own ID table): the
      adaptive interaction view;
    - ``kg``: a GAT encoder over the KG (entities, own table) with its own view generator: the
      adaptive KG view; users carry a free vector in this block.

    Loss per step: BPR on the concatenation (+ ``reg_weight`` L2 on the batch rows), ``kg_weight``
    times the DistMult triple loss ``softplus(s(h,r,t') - s(h,r,t))`` (``s = h^T diag(w_r) t`` on the KG
    view's output) over a head-uniform batch of ``kg_batch`` triples, and ``cl_weight`` times
    :func:`view_contrast` between (the first ``cl_batch`` of) the batch's positive items in the interaction view and in the
    KG view (2-layer ELU projections). The gates train through every term they enter. At
    evaluation the generators are off (gates 1), as in the port's test mode.

    Defaults: ``embedding_dim`` 64 and ``lr`` as the other KG baselines here; ``n_layers`` 2,
    ``negative_slope`` 0.2 (DGL's GAT), ``gate_temperature`` 0.7 (hard-coded in the port's
    ``calc_cl_emb`` / ``calc_kg_emb``), ``feat_drop`` / ``attn_drop`` 0, ``tau`` 0.2,
    ``cl_weight`` 1.0 (``cl_alpha``), ``kg_weight`` 1.0, ``reg_weight`` 1e-5, ``kg_batch`` 4096, ``cl_batch`` 1024: ours,
    no readable source (see conf/model/kacl.yaml).

    Deviations from the port: one joint step instead of its three alternating phases (CF batches,
    then KG batches, then CL batches per epoch), so the KG and CL terms read the same forward
    pass as BPR (the port re-encodes with detached gates); the DistMult loss ranks the true tail
    above the corrupted one (the port's ``softplus(pos - neg)`` would push true triples *down* a
    similarity score); DistMult with diagonal relation matrices, as its name says (the port's
    ``DistMult`` holds full W x W matrices, i.e. RESCAL, whose per-triple gather is a
    (batch, W, W) tensor: 600 MB at batch 4096, W = 192); single-head GAT without residual attention (``alpha`` 0); self-loops on
    both graphs (DGL's GAT refuses nodes without in-edges); the users' KG-block vector has the KG
    readout's width; the contrast runs on ``cl_batch`` items per step (the port contrasts every
    item once per epoch in its own CL phase; at batch 4096 the (B, B) logits and their backward
    took ~5 s of a ~21 s step on ml-100k-kg-tiny on the loaded 2-core CPU, a quarter of the batch
    a sixteenth of that).

    Speed (``benchmarks/models_speed.py --smoke``, see :class:`~slifmr.models.krdn.KRDN`'s note):
    7.4x LightGCN per epoch, measured once on the loaded shared machine: three GAT encoders (two of
    them gated) instead of one propagation.
    """

    def __init__(
        self,
        meta: dict,
        embedding_dim: int = 64,
        n_layers: int = 2,
        negative_slope: float = 0.2,
        feat_drop: float = 0.0,
        attn_drop: float = 0.0,
        gate_temperature: float = 0.7,
        tau: float = 0.2,
        cl_weight: float = 1.0,
        kg_weight: float = 1.0,
        reg_weight: float = 1e-5,
        kg_batch: int = 4096,
        cl_batch: int = 1024,
        lr: float = 1e-3,
        topk=TOPK,
    ):
        super().__init__(meta, lr=lr, topk=topk)
        self.save_hyperparameters()
        if int(meta.get("n_entities", 0)) == 0:
            raise DataError("model=kacl needs a knowledge graph (kg_final.txt / .kg triples) for its KG view, "
                            "KG view generator and DistMult loss, but the dataset has none (meta n_entities = 0)")
        if n_layers < 1 or kg_batch < 1 or cl_batch < 2 or tau <= 0 or gate_temperature <= 0:
            raise ValueError(f"n_layers >= 1, kg_batch >= 1, cl_batch >= 2, tau > 0 and gate_temperature > 0 needed, "
                             f"got {n_layers}, {kg_batch}, {cl_batch}, {tau}, {gate_temperature}")
        self.cl_batch = cl_batch
        self.gate_temperature, self.tau = gate_temperature, tau
        self.cl_weight, self.kg_weight, self.reg_weight, self.kg_batch = cl_weight, kg_weight, reg_weight, kg_batch
        self.n_entities = max(int(meta["n_entities"]), self.n_items)
        self.n_rel = 2 * int(meta["n_relations"])
        d = embedding_dim
        width = d * (n_layers + 1)
        n_ui = self.n_users + self.n_items

        def table(n: int, dim: int) -> nn.Parameter:
            return nn.Parameter(nn.init.xavier_normal_(torch.empty(n, dim), gain=1.414))

        self.cf_emb, self.cl_emb, self.kg_emb = table(n_ui, d), table(n_ui, d), table(self.n_entities, d)
        self.user_kg_emb = table(self.n_users, width)
        self.cf_encoder = GATEncoder(d, n_layers, negative_slope, feat_drop, attn_drop)
        self.cl_encoder = GATEncoder(d, n_layers, negative_slope, feat_drop, attn_drop)
        self.kg_encoder = GATEncoder(d, n_layers, negative_slope, feat_drop, attn_drop)
        self.ui_generator, self.kg_generator = ViewGenerator(d), ViewGenerator(d)
        self.proj_cl, self.proj_kg = _projection(width, d), _projection(width, d)
        self.distmult = nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_rel, width), gain=1.414))  # diag W_r
        self._graphs: dict | None = None

    # -- graphs ------------------------------------------------------------------------------
    def graph_state(self) -> dict:
        if self._graphs is None or self._graphs["store"] is not self.graphs or self._graphs["device"] != self.device:
            g, dev = self.graphs, self.device
            u, i = g.train_users, g.train_items + self.n_users
            heads, tails, ptr, _ = g.kg_edges("cpu")
            rels = edge_relations(ptr.cpu(), self.n_rel, "KACL")
            triples = torch.stack([heads, rels, tails], 1)
            order, hptr, present = head_index(heads, self.n_entities)
            self._graphs = {"store": g, "device": dev,
                            "ui": _Graph(torch.cat([u, i]), torch.cat([i, u]), self.n_users + self.n_items, dev),
                            "kg": _Graph(tails, heads, self.n_entities, dev),  # messages tail -> head
                            "triples": triples.to(dev), "order": order.to(dev), "ptr": hptr.to(dev),
                            "present": present.to(dev), "ranges": torch.tensor([0, self.n_entities], device=dev)}
        return self._graphs

    # -- model -------------------------------------------------------------------------------
    def views(self, gated: bool) -> tuple[Tensor, Tensor, Tensor]:
        """(cf (U+I, W), cl (U+I, W), kg (N, W)) readouts; ``gated``: the view generators' gates on."""
        st = self.graph_state()
        ui, kg = st["ui"], st["kg"]
        cf = self.cf_encoder(ui, self.cf_emb)
        g_ui = g_kg = None
        if gated:
            g_ui = concrete_gates(self.ui_generator(ui, F.normalize(self.cl_emb, dim=1)), self.gate_temperature)
            g_kg = concrete_gates(self.kg_generator(kg, F.normalize(self.kg_emb, dim=1)), self.gate_temperature)
        return cf, self.cl_encoder(ui, self.cl_emb, g_ui), self.kg_encoder(kg, self.kg_emb, g_kg)

    def combine(self, cf: Tensor, cl: Tensor, kg: Tensor) -> tuple[Tensor, Tensor]:
        users = torch.cat([cf[: self.n_users], cl[: self.n_users], self.user_kg_emb], 1)
        items = torch.cat([cf[self.n_users :], cl[self.n_users :], kg[: self.n_items]], 1)
        return users, items

    def embeddings(self) -> tuple[Tensor, Tensor]:
        return self.combine(*self.views(gated=False))

    def distmult_score(self, kg: Tensor, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """(B,) ``h^T diag(w_r) t`` (DistMult)."""
        return (rows(kg, h) * rows(self.distmult, r) * rows(kg, t)).sum(1)

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        cf, cl, kg = self.views(gated=self.training)
        users, items = self.combine(cf, cl, kg)
        u, p, n = rows(users, batch["users"]), rows(items, batch["pos"]), rows(items, batch["neg"])
        bpr = bpr_loss((u * p).sum(-1), (u * n).sum(-1))
        reg = l2_reg(u, p, n)
        total = bpr + self.reg_weight * reg
        out = {"bpr": bpr, "reg": reg}
        if self.kg_weight > 0:
            st = self.graph_state()
            # seeded from the global CPU stream (seed_everything), drawn on the model's device
            gen = torch.Generator(device=self.device).manual_seed(int(torch.randint(0, 2**31 - 1, (1,))))
            h, r, t, t_neg = sample_kg_triples(st["triples"], st["order"], st["ptr"], st["present"], self.kg_batch,
                                               st["ranges"], gen)
            kg_loss = F.softplus(self.distmult_score(kg, h, r, t_neg) - self.distmult_score(kg, h, r, t)).mean()
            total = total + self.kg_weight * kg_loss
            out["kg"] = kg_loss
        if self.cl_weight > 0:
            pos = batch["pos"][: self.cl_batch]  # the batch is shuffled: a random subset of its items
            cl_loss = view_contrast(self.proj_cl(rows(cl, self.n_users + pos)), self.proj_kg(rows(kg, pos)), self.tau)
            total = total + self.cl_weight * cl_loss
            out["cl"] = cl_loss
        out["loss"] = total
        return out

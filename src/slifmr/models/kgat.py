"""KGAT (Wang et al., KDD 2019, "KGAT: Knowledge Graph Attention Network for Recommendation").

Collaborative knowledge graph (CKG), knowledge-aware attention, bi-interaction aggregation, and
alternating CF (BPR) and KG (TransR) optimisation, as in the paper's Section 3 and its official
TensorFlow release (github.com/xiangwang1223/knowledge_graph_attention_network).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slifmr.errors import DataError
from slifmr.graphs.kg import KGStructure, SparsePattern, kg_propagate, kg_structure, segment_softmax
from slifmr.graphs.kg_ops import collaborative_kg, head_index, relation_ptr, sample_kg_triples
from slifmr.models.base import TOPK, RecModel, adam, rows
from slifmr.models.encoders.kg_attention import relation_scores
from slifmr.models.losses import bpr_loss, l2_reg

LEAKY_SLOPE = 0.2  # tf.nn.leaky_relu's default, used by the official aggregators


@torch.no_grad()
def kgat_attention(x: Tensor, heads: Tensor, tails: Tensor, rel_ptr: Tensor, trans_w: Tensor, rel_emb: Tensor,
                   n_nodes: int, structure: KGStructure | None = None) -> Tensor:
    """Knowledge-aware attention (Eq. 4-5): ``pi(h,r,t) = (W_r e_t)^T tanh(W_r e_h + e_r)``,
    softmax over each head's edges.

    Computed without gradient, as the official release does once per epoch
    (``update_attentive_A``); it runs outside the training step. The score is SLIF-MR's Eq. 11
    score, so it is :func:`~slifmr.models.encoders.kg_attention.relation_scores` with TransR's
    ``e W_r`` convention (``W_r`` (d, k)) transposed.

    Args:
        x: (n_nodes, d) node embeddings (the ego, layer-0 ones).
        heads, tails: (E,) edges sorted by relation; rel_ptr: (R+1,) CSR offsets of each relation.
        trans_w: (R, d, k); rel_emb: (R, k).
        structure: the edges' precomputed :class:`KGStructure` (built here when not given).

    Returns:
        (E,) attention weights; each head's weights sum to 1.
    """
    if structure is None:
        structure = kg_structure(heads, tails, rel_ptr, n_nodes, can_fold=trans_w.shape[1] == trans_w.shape[2])
    scores = relation_scores(x, trans_w.transpose(1, 2), rel_emb, structure)
    return segment_softmax(scores, heads, n_nodes)


def transr_loss(x: Tensor, trans_w: Tensor, rel_emb: Tensor, h: Tensor, r: Tensor, t: Tensor,
                t_neg: Tensor) -> tuple[Tensor, Tensor]:
    """TransR (Eq. 1-2): ``g(h,r,t) = ||W_r e_h + e_r - W_r e_t||^2``, loss ``-ln sigma(g(h,r,t') - g(h,r,t))``
    (a mean over the batch), and the L2 term on the projected batch embeddings (official: l2_loss / B).

    Per triple ``W_r`` is gathered, (B, d, k): fine for a sampled batch (B = 2048: 33 MB)."""
    w = trans_w.index_select(0, r)  # (B, d, k)
    def proj(nodes: Tensor) -> Tensor:
        return torch.bmm(x.index_select(0, nodes).unsqueeze(1), w).squeeze(1)  # (B, k)
    ph, pt, pn, er = proj(h), proj(t), proj(t_neg), rel_emb.index_select(0, r)
    pos = (ph + er - pt).pow(2).sum(-1)
    neg = (ph + er - pn).pow(2).sum(-1)
    return F.softplus(pos - neg).mean(), l2_reg(ph, er, pt, pn)


class KGAT(RecModel):
    """KGAT: score ``y_ui = e*_u · e*_i`` with ``e* = [e^(0) | e^(1) | ... | e^(L)]`` (Eq. 11),
    each ``e^(l)`` L2-normalised as in the official code.

    Defaults and where they come from (paper Section 4.1.3 and the official release's README
    commands / parser):

    - ``embedding_dim`` 64, ``kge_dim`` 64 (TransR relation space), ``layer_sizes`` [64, 32, 16],
      ``mess_dropout`` 0.1 per layer: paper 4.1.3 and ``--layer_size [64,32,16] --mess_dropout
      [0.1,0.1,0.1]``.
    - bi-interaction aggregator (Eq. 8), LeakyReLU slope 0.2 (``tf.nn.leaky_relu``).
    - ``reg_weight`` 1e-5 (CF L2 on the final batch embeddings) and ``kg_reg_weight`` 1e-5 (TransR
      L2 on the projected batch embeddings): ``--regs [1e-5,1e-5]``.
    - ``kg_batch_size`` 2048: ``--batch_size_kg`` default.
    - alternation: the official code runs an epoch of CF batches, then an epoch of KG batches, each
      with its own Adam optimiser; here every training step does one CF update then one KG update
      (Lightning manual optimisation, two Adams), i.e. the same alternation at a finer grain.
      The KG batch is head-uniform (h, r, t, t') over the CKG (user-item triples included, as the
      official ``all_kg_dict`` does), sampled vectorised and seeded by (seed, epoch, step).
    - attention: recomputed without gradient at the start of every epoch (the official code
      refreshes its attentive Laplacian ``A_in`` once per epoch, after the KG phase); evaluation
      recomputes it from the current parameters. Before the first refresh the official code
      uses the row-normalised adjacency; here the first epoch already starts from attention.
    - ``lr``: the official 1e-4 (Amazon-Book) is far too slow at our batch size 4096 within 100
      epochs; see conf/model/kgat.yaml.
    """

    def __init__(
        self,
        meta: dict,
        embedding_dim: int = 64,
        kge_dim: int = 64,
        layer_sizes: Sequence[int] = (64, 32, 16),
        mess_dropout: float = 0.1,
        reg_weight: float = 1e-5,
        kg_reg_weight: float = 1e-5,
        kg_batch_size: int = 2048,
        lr: float = 1e-4,
        topk=TOPK,
    ):
        super().__init__(meta, lr=lr, topk=topk)
        self.save_hyperparameters()
        if int(meta.get("n_entities", 0)) == 0:
            raise DataError("model=kgat needs a knowledge graph (kg_final.txt / .kg triples) for its collaborative "
                            "knowledge graph and TransR loss, but the dataset has none (meta n_entities = 0)")
        if kg_batch_size < 1:
            raise ValueError(f"kg_batch_size must be >= 1, got {kg_batch_size}")
        self.automatic_optimization = False  # CF and KG steps alternate, each with its own Adam
        self.reg_weight, self.kg_reg_weight = reg_weight, kg_reg_weight
        self.kg_batch_size = kg_batch_size
        self.n_entities = max(int(meta["n_entities"]), self.n_items)
        self.n_base_relations = int(meta["n_relations"])
        self.n_ckg_relations = 2 * self.n_base_relations + 2
        self.n_nodes = self.n_entities + self.n_users
        d = embedding_dim
        self.init_id_embeddings(d)
        self.entity_emb = nn.Embedding(max(self.n_entities - self.n_items, 1), d)
        nn.init.xavier_uniform_(self.entity_emb.weight)
        self.rel_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_ckg_relations, kge_dim)))
        self.trans_w = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_ckg_relations, d, kge_dim)))
        sizes = [d, *[int(s) for s in layer_sizes]]
        self.w_sum = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.w_bi = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        for lin in [*self.w_sum, *self.w_bi]:
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.dropout = nn.Dropout(mess_dropout)
        self._ckg: dict | None = None
        self._att: Tensor | None = None  # (E,) attention of the current epoch (training only)

    # -- graph -------------------------------------------------------------------------------
    def ckg(self) -> dict:
        """The CKG of the attached graph store (built once per store and device)."""
        if self._ckg is None or self._ckg["store"] is not self.graphs or self._ckg["device"] != self.device:
            g = self.graphs
            kg = g.kg if g.kg is not None else torch.zeros(0, 3, dtype=torch.long)
            triples = collaborative_kg(kg, g.train_users, g.train_items, self.n_entities, self.n_users,
                                       self.n_base_relations)  # (E, 3) sorted by (relation, head, tail)
            heads, rels, tails = triples.unbind(1)
            order, hptr, present = head_index(heads, self.n_nodes)
            rel_ptr = relation_ptr(rels, self.n_ckg_relations)
            dev = self.device
            self._ckg = {
                "store": g, "device": dev, "triples": triples.to(dev),
                "heads": heads.to(dev), "tails": tails.to(dev),
                "rel_ptr": rel_ptr,
                "order": order.to(dev), "head_ptr": hptr.to(dev), "present": present.to(dev),
                "pattern": SparsePattern.build(heads, tails, (self.n_nodes, self.n_nodes)).to(dev),
                "structure": kg_structure(heads, tails, rel_ptr, self.n_nodes,
                                          can_fold=self.trans_w.shape[1] == self.trans_w.shape[2]).to(dev),
                "tail_ranges": torch.tensor([0, self.n_entities, self.n_nodes], device=dev),
            }
            self._att = None
        return self._ckg

    def ego(self) -> Tensor:
        """(n_nodes, d): items, other entities, then users (CKG node order)."""
        other = self.entity_emb.weight[: self.n_entities - self.n_items]
        return torch.cat([self.item_emb.weight, other, self.user_emb.weight])

    def attention(self) -> Tensor:
        """(E,) attention of every CKG edge from the current parameters (no gradient)."""
        c = self.ckg()
        return kgat_attention(self.ego().detach(), c["heads"], c["tails"], c["rel_ptr"], self.trans_w.detach(),
                              self.rel_emb.detach(), self.n_nodes, c["structure"])

    def propagate(self, att: Tensor) -> Tensor:
        """(n_nodes, d + sum(layer_sizes)): bi-interaction layers (Eq. 8) over the attentive CKG,
        message dropout, L2-normalised layer outputs concatenated with layer 0 (Eq. 11)."""
        c = self.ckg()
        x = self.ego()
        outs = [x]
        for w_sum, w_bi in zip(self.w_sum, self.w_bi):
            side = kg_propagate(c["heads"], c["tails"], att, x, self.n_nodes, pattern=c["pattern"])  # e_N_h
            x = F.leaky_relu(w_sum(x + side), LEAKY_SLOPE) + F.leaky_relu(w_bi(x * side), LEAKY_SLOPE)
            x = self.dropout(x)
            outs.append(F.normalize(x, dim=1))
        return torch.cat(outs, 1)

    def on_train_epoch_start(self) -> None:
        self._att = self.attention()

    def embeddings(self) -> tuple[Tensor, Tensor]:
        c = self.ckg()  # (re)built first: a new graph drops the cached attention
        if self.training and self._att is not None and self._att.numel() == c["heads"].numel():
            att = self._att
        else:
            att = self.attention()
            if self.training:
                self._att = att
        out = self.propagate(att)
        return out[self.n_entities :], out[: self.n_items]

    # -- losses ------------------------------------------------------------------------------
    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """CF loss (Eq. 13): BPR on the concatenated representations + L2 on them."""
        users, items = self.embeddings()
        u, p, n = rows(users, batch["users"]), rows(items, batch["pos"]), rows(items, batch["neg"])
        bpr = bpr_loss((u * p).sum(-1), (u * n).sum(-1))
        reg = l2_reg(u, p, n)
        return {"loss": bpr + self.reg_weight * reg, "bpr": bpr, "reg": reg}

    def kg_batch(self, step: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(h, r, t, t') of one KG step, seeded by (seed, epoch, step), drawn on the model's device."""
        c = self.ckg()
        seed = int(getattr(self.graphs, "seed", 0))
        epoch = self.current_epoch if self._trainer is not None else 0
        g = torch.Generator(device=self.device).manual_seed(((seed * 1_000_003 + epoch) * 100_003 + step) * 7 + 3)
        return sample_kg_triples(c["triples"], c["order"], c["head_ptr"], c["present"], self.kg_batch_size,
                                 c["tail_ranges"], g)

    def kg_loss(self, h: Tensor, r: Tensor, t: Tensor, t_neg: Tensor) -> dict[str, Tensor]:
        """KG loss (Eq. 2): TransR BPR over (h, r, t, t') + L2 on the projected embeddings."""
        kge, reg = transr_loss(self.ego(), self.trans_w, self.rel_emb, h, r, t, t_neg)
        return {"loss": kge + self.kg_reg_weight * reg, "kg": kge, "kg_reg": reg}

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        opt_cf, opt_kg = self.optimizers()
        # every gradient is cleared before each backward, so each step sees only its own loss's
        cf = self.loss(batch)
        self.zero_grad(set_to_none=True)
        self.manual_backward(cf["loss"])
        opt_cf.step()
        kg = self.kg_loss(*self.kg_batch(batch_idx))
        self.zero_grad(set_to_none=True)
        self.manual_backward(kg["loss"])
        opt_kg.step()
        logs = {**cf, "kg_loss": kg["loss"], "kg": kg["kg"], "kg_reg": kg["kg_reg"]}
        self.log_train(logs, cf["loss"], len(batch["users"]))
        return cf["loss"].detach()

    def cf_parameters(self) -> list[nn.Parameter]:
        """What the CF loss trains: ID embeddings and the aggregators (attention is a constant there)."""
        return [self.user_emb.weight, self.item_emb.weight, self.entity_emb.weight,
                *self.w_sum.parameters(), *self.w_bi.parameters()]

    def kg_parameters(self) -> list[nn.Parameter]:
        """What TransR trains: the node embeddings, relation embeddings and projections."""
        return [self.user_emb.weight, self.item_emb.weight, self.entity_emb.weight, self.rel_emb, self.trans_w]

    def configure_optimizers(self):
        return [adam(self.cf_parameters(), lr=self.lr, weight_decay=self.weight_decay),
                adam(self.kg_parameters(), lr=self.lr, weight_decay=self.weight_decay)]

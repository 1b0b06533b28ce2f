"""KGIN (Wang et al., WWW 2021, "Learning Intents behind Interactions with Knowledge Graph for
Recommendation"): user intents as attentive combinations of relations, relational path-aware
aggregation, independence among intents.

Follows the paper's Section 3 and the official PyTorch release
(github.com/huangtinglin/Knowledge_Graph_based_Intent_Network, ``modules/KGIN.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slifmr.errors import DataError
from slifmr.graphs.kg import SparsePattern, kg_propagate
from slifmr.graphs.kg_ops import edge_relations, relational_aggregate
from slifmr.models.base import TOPK, RecModel, rows
from slifmr.models.losses import bpr_loss, l2_reg

INDEPENDENCE = ("distance", "cosine")
INDEPENDENCE_ON = ("attention", "embedding")


def distance_correlation_loss(z: Tensor) -> Tensor:
    """Sum over factor pairs p < p' of the distance correlation of rows ``z_p`` and ``z_p'`` (Eq. 15),
    each row read as ``C`` scalar samples (the official ``DistanceCorrelation``, with its 1e-8 guards).

    z: (F, C) -> scalar. All pairs at once (F x C x C distance matrices, F = 4 in practice)."""
    n_f, c = z.shape
    a = ((z.unsqueeze(2) - z.unsqueeze(1)).pow(2) + 1e-8).sqrt()  # (F, C, C) |z_pi - z_pj|
    a = a - a.mean(1, keepdim=True) - a.mean(2, keepdim=True) + a.mean((1, 2), keepdim=True)  # double-centred
    dcov2 = torch.einsum("fij,gij->fg", a, a) / (c * c)  # (F, F) squared distance covariances
    dcov = (dcov2.clamp_min(0.0) + 1e-8).sqrt()
    diag = dcov.diagonal()
    dcor = dcov / (diag.unsqueeze(1) * diag.unsqueeze(0) + 1e-8).sqrt()
    iu = torch.triu_indices(n_f, n_f, offset=1, device=z.device)
    return dcor.flatten().index_select(0, iu[0] * n_f + iu[1]).sum()  # index_select: see models.base.rows


def cosine_independence_loss(z: Tensor) -> Tensor:
    """Sum over factor pairs p < p' of the squared cosine of rows ``z_p``, ``z_p'`` (official ``cosine``)."""
    zn = F.normalize(z, dim=1)
    cos2 = (zn @ zn.T).pow(2)
    iu = torch.triu_indices(z.shape[0], z.shape[0], offset=1, device=z.device)
    return cos2[iu[0], iu[1]].sum()


class KGIN(RecModel):
    """KGIN: ``y_ui = e*_u · e*_i`` with ``e* = sum_{l=0..L} e^(l)`` (Eq. 12).

    Per hop (official ``Aggregator``):

    - entities: ``e_h <- mean_{(h,r,t)} e_r ⊙ e_t`` over KG edges with inverse relations (Eq. 7);
    - users: ``e_u <- m_u + m_u ⊙ sum_p beta(u,p) e_p`` with ``m_u`` the mean of the user's train
      item embeddings, ``beta = softmax_p(e_u · z_p)`` (``z_p`` the ``latent_emb`` rows) and the
      intent ``e_p = sum_r softmax_r(w_rp) e_r`` (Eq. 2-3, 6);
    - message dropout, then L2 normalisation of both.

    Defaults and where they come from (official ``utils/parser.py``, README commands):
    ``embedding_dim`` 64, ``context_hops`` 3, ``n_factors`` 4, ``independence`` 'distance'
    (``--ind``), ``sim_regularity`` 1e-4, ``reg_weight`` 1e-5 (``--l2``, on the final batch
    embeddings), ``node_dropout`` 0.5 (keep a random half of the KG edges and of the
    interaction entries, the latter rescaled by 2), ``mess_dropout`` 0.1. Inverse relations are
    on (``--inverse_r``). The official code measures independence on the intents' relation
    attention logits ``w_p`` (``disen_weight_att``, ``independence_on='attention'``), the paper on
    the intent embeddings ``e_p`` (``'embedding'``). ``lr``: the official 1e-4 is too slow here
    (batch 4096, <= 100 epochs); see conf/model/kgin.yaml.
    """

    def __init__(
        self,
        meta: dict,
        embedding_dim: int = 64,
        context_hops: int = 3,
        n_factors: int = 4,
        independence: str = "distance",
        independence_on: str = "attention",
        sim_regularity: float = 1e-4,
        reg_weight: float = 1e-5,
        node_dropout: float = 0.5,
        mess_dropout: float = 0.1,
        lr: float = 1e-4,
        topk=TOPK,
    ):
        super().__init__(meta, lr=lr, topk=topk)
        self.save_hyperparameters()
        if int(meta.get("n_entities", 0)) == 0:
            raise DataError("model=kgin needs a knowledge graph (kg_final.txt / .kg triples) for its relational "
                            "path-aware aggregation and relation-based intents, but the dataset has none "
                            "(meta n_entities = 0)")
        if independence not in INDEPENDENCE:
            raise ValueError(f"independence must be one of {INDEPENDENCE}, got '{independence}'")
        if independence_on not in INDEPENDENCE_ON:
            raise ValueError(f"independence_on must be one of {INDEPENDENCE_ON}, got '{independence_on}'")
        if not 0.0 <= node_dropout < 1.0:
            raise ValueError(f"node_dropout must lie in [0, 1), got {node_dropout}")
        if n_factors < 1 or context_hops < 1:
            raise ValueError(f"n_factors and context_hops must be >= 1, got {n_factors}, {context_hops}")
        self.context_hops, self.n_factors = context_hops, n_factors
        self.independence, self.independence_on = independence, independence_on
        self.sim_regularity, self.reg_weight = sim_regularity, reg_weight
        self.node_dropout = node_dropout
        self.n_entities = max(int(meta["n_entities"]), self.n_items)
        self.n_rel = 2 * int(meta["n_relations"])  # KG relations and their inverses (no interact)
        d = embedding_dim
        self.init_id_embeddings(d)
        self.entity_emb = nn.Embedding(max(self.n_entities - self.n_items, 1), d)
        nn.init.xavier_uniform_(self.entity_emb.weight)
        self.latent_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(n_factors, d)))  # z_p
        self.rel_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_rel, d)))  # e_r
        self.intent_att = nn.Parameter(nn.init.xavier_uniform_(torch.empty(n_factors, self.n_rel)))  # w_rp
        self.mess_dropout = nn.Dropout(mess_dropout)
        self._ui: dict | None = None
        self._kg: tuple | None = None

    # -- graphs ------------------------------------------------------------------------------
    def interaction_mean(self) -> dict:
        """(U, I) row-normalised train interactions (official ``mean_mat_list[0]``), as a pattern."""
        if self._ui is None or self._ui["store"] is not self.graphs or self._ui["device"] != self.device:
            g = self.graphs
            key = torch.unique(g.train_users * self.n_items + g.train_items)
            u, i = key // self.n_items, key % self.n_items
            vals = torch.bincount(u, minlength=self.n_users).clamp_min(1).float().reciprocal()[u]
            dev = self.device
            self._ui = {"store": g, "device": dev, "rows": u.to(dev), "cols": i.to(dev), "vals": vals.to(dev),
                        "pattern": SparsePattern.build(u, i, (self.n_users, self.n_items)).to(dev)}
        return self._ui

    def kg(self) -> tuple[Tensor, Tensor, Tensor]:
        """(heads, tails, relations) of the store's KG view (inverse relations included)."""
        heads, tails, ptr, _ = self.graphs.kg_edges(self.device)
        if self._kg is None or self._kg[0] is not heads:
            self._kg = (heads, tails, edge_relations(ptr.to(self.device), self.n_rel, "KGIN"))
        return self._kg

    # -- model -------------------------------------------------------------------------------
    def intents(self) -> Tensor:
        """(F, d) intent embeddings ``e_p = sum_r softmax_r(w_rp) e_r`` (Eq. 2)."""
        return torch.softmax(self.intent_att, dim=-1) @ self.rel_emb

    def independence_loss(self) -> Tensor:
        z = self.intent_att if self.independence_on == "attention" else self.intents()
        return distance_correlation_loss(z) if self.independence == "distance" else cosine_independence_loss(z)

    def propagate(self) -> tuple[Tensor, Tensor]:
        """(users (U, d), items (I, d)): sums of hops 0..L; node and message dropout when training."""
        heads, tails, rels = self.kg()
        ui = self.interaction_mean()
        vals = ui["vals"]
        if self.training and self.node_dropout > 0:
            keep = torch.randperm(heads.numel(), device=heads.device)[: int(heads.numel() * (1 - self.node_dropout))]
            heads, tails, rels = heads[keep], tails[keep], rels[keep]  # official _edge_sampling
            mask = torch.rand(vals.numel(), device=vals.device) >= self.node_dropout
            vals = vals * mask / (1 - self.node_dropout)  # official _sparse_dropout
        other = self.entity_emb.weight[: self.n_entities - self.n_items]
        ent = torch.cat([self.item_emb.weight, other])  # (N, d)
        usr = self.user_emb.weight  # (U, d)
        ent_sum, usr_sum = ent, usr
        intents = self.intents()  # (F, d)
        for _ in range(self.context_hops):
            ent_agg = relational_aggregate(heads, tails, rels, ent, self.rel_emb, self.n_entities)
            m_u = kg_propagate(ui["rows"], ui["cols"], vals, ent[: self.n_items], self.n_users,
                               pattern=ui["pattern"])  # (U, d) mean of the user's items
            beta = torch.softmax(usr @ self.latent_emb.T, dim=1)  # (U, F)
            usr_agg = m_u * (beta @ intents) + m_u
            ent = F.normalize(self.mess_dropout(ent_agg), dim=1)
            usr = F.normalize(self.mess_dropout(usr_agg), dim=1)
            ent_sum, usr_sum = ent_sum + ent, usr_sum + usr
        return usr_sum, ent_sum[: self.n_items]

    def embeddings(self) -> tuple[Tensor, Tensor]:
        return self.propagate()

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """BPR + ``reg_weight`` L2 on the final batch embeddings + ``sim_regularity`` independence (Eq. 16)."""
        users, items = self.propagate()
        u, p, n = rows(users, batch["users"]), rows(items, batch["pos"]), rows(items, batch["neg"])
        bpr = bpr_loss((u * p).sum(-1), (u * n).sum(-1))
        reg = l2_reg(u, p, n)
        ind = self.independence_loss()
        total = bpr + self.reg_weight * reg + self.sim_regularity * ind
        return {"loss": total, "bpr": bpr, "reg": reg, "independence": ind}

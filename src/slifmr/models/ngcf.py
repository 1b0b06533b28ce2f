"""NGCF (Wang et al., "Neural Graph Collaborative Filtering", SIGIR 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slifmr.graphs.adjacency import SparseOperator
from slifmr.models.base import TOPK, RecModel, rows
from slifmr.models.losses import bpr_loss, l2_reg


def ngcf_layer(adj, x: Tensor, w1: nn.Linear, w2: nn.Linear, slope: float) -> Tensor:
    """One embedding-propagation layer, the paper's Eq. 7 in matrix form:

    ``E' = LeakyReLU( W1((L + I) E) + W2((L E) * E) )`` with ``L = D^-1/2 A D^-1/2`` and the
    element-wise product ``*`` (the bi-interaction ``e_i * e_u`` of Eq. 3, aggregated by ``L``).
    ``W1``/``W2`` are ``nn.Linear`` (weights and the release's biases).

    adj: (N, N) sparse operator; x: (N, d_in) -> (N, d_out).
    """
    side = adj @ x  # (N, d_in): L E
    return F.leaky_relu(w1(side + x) + w2(side * x), negative_slope=slope)


def drop_entries(adj: SparseOperator, p: float) -> SparseOperator:
    """The official "node dropout": each non-zero of the sparse graph is dropped with probability
    ``p`` and the survivors scaled by ``1 / (1 - p)`` (a fresh sample per call, global RNG)."""
    coo = adj.a.to_sparse_coo().coalesce()
    vals = coo.values()
    keep = torch.rand(vals.shape, device=vals.device) >= p  # (nnz,)
    idx = coo.indices()[:, keep]
    new = torch.sparse_coo_tensor(idx, vals[keep] / (1.0 - p), coo.shape, check_invariants=False)
    return SparseOperator(new)


class NGCF(RecModel):
    """NGCF: ``len(layer_sizes)`` propagation layers (:func:`ngcf_layer`) over the normalised
    interaction graph; the representation is the concatenation of layer 0 and every layer's
    output (each L2-normalised row-wise, as in the official release), so ``d_final = d + sum(sizes)``.
    Loss: BPR + ``reg_weight`` * L2 of the batch's final representations (the release's
    regulariser; LightGCN later moved it onto the ego embeddings).

    Defaults and where they come from (paper Section 4.2 / official TF release
    ``xiangwang1223/neural_graph_collaborative_filtering``, README command):

    * ``embedding_dim=64``, ``layer_sizes=[64, 64, 64]``: paper ("embedding size 64", L=3 best).
    * ``mess_dropout=0.1`` per layer, ``node_dropout=0.0``: release (``--mess_dropout [0.1,0.1,0.1]``;
      node dropout exists but ``node_dropout_flag`` defaults to 0).
    * ``reg_weight=1e-5``: release ``--regs [1e-5]``.
    * ``leaky_slope=0.2``: ``tf.nn.leaky_relu``'s default, used by the release.
    * ``normalize_layers=True``: the release's ``l2_normalize`` of each layer's output before
      concatenation (the propagation itself continues with the un-normalised output).
    * ``lr``: the release uses 1e-4 with batch 1024 (for 400 epochs); see conf/model/ngcf.yaml.

    Deviations: one LeakyReLU on the sum of both terms (paper Eq. 7; the TF release applies one
    to each term separately, RecBole follows the paper); biases start at 0 (the release draws
    them Xavier); Xavier-uniform weights as the release.
    """

    def __init__(
        self,
        meta: dict,
        embedding_dim: int = 64,
        layer_sizes: Sequence[int] = (64, 64, 64),
        mess_dropout: float | Sequence[float] = 0.1,
        node_dropout: float = 0.0,
        leaky_slope: float = 0.2,
        normalize_layers: bool = True,
        reg_weight: float = 1e-5,
        lr: float = 1e-3,
        topk=TOPK,
    ):
        super().__init__(meta, lr=lr, topk=topk)
        self.save_hyperparameters()
        sizes = [int(s) for s in layer_sizes]
        drops = [float(mess_dropout)] * len(sizes) if isinstance(mess_dropout, (int, float)) else \
            [float(p) for p in mess_dropout]
        if len(drops) != len(sizes):
            raise ValueError(f"mess_dropout has {len(drops)} entries for {len(sizes)} layers (layer_sizes)")
        if not all(0.0 <= p < 1.0 for p in [*drops, node_dropout]):
            raise ValueError(f"dropout rates must lie in [0, 1), got mess {drops}, node {node_dropout}")
        self.mess_dropout = drops
        self.node_dropout = float(node_dropout)
        self.leaky_slope = leaky_slope
        self.normalize_layers = normalize_layers
        self.reg_weight = reg_weight
        self.init_id_embeddings(embedding_dim)
        dims = [embedding_dim, *sizes]
        self.w1 = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))  # sum messages
        self.w2 = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))  # bi-interaction
        for lin in [*self.w1, *self.w2]:
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def propagate(self) -> Tensor:
        """(U+I, d + sum(layer_sizes)): ``[E0 | n(E1) | ... | n(EL)]``, n = row L2 normalisation."""
        adj = self.graphs.interaction_adj(self.device)
        if self.training and self.node_dropout > 0:
            adj = drop_entries(adj, self.node_dropout)
        x = torch.cat([self.user_emb.weight, self.item_emb.weight])  # (U+I, d)
        out = [x]
        for w1, w2, p in zip(self.w1, self.w2, self.mess_dropout):
            x = ngcf_layer(adj, x, w1, w2, self.leaky_slope)
            x = F.dropout(x, p, training=self.training)
            out.append(F.normalize(x, dim=1) if self.normalize_layers else x)
        return torch.cat(out, dim=1)

    def embeddings(self) -> tuple[Tensor, Tensor]:
        out = self.propagate()
        return out[: self.n_users], out[self.n_users :]

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        users, items = self.embeddings()
        u, p, n = rows(users, batch["users"]), rows(items, batch["pos"]), rows(items, batch["neg"])  # (B, d_final)
        bpr = bpr_loss((u * p).sum(-1), (u * n).sum(-1))
        reg = l2_reg(u, p, n)
        return {"loss": bpr + self.reg_weight * reg, "bpr": bpr, "reg": reg}

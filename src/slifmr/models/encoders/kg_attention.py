"""Relation-aware KG attention encoder (Eq. 10-13).

``alpha_hat(h,r,t) = (W_r x_t)^T tanh(W_r x_h + e_r)``, softmax over each head's triples
(a segment softmax), then every layer propagates ``x_h <- sum_t alpha(h,r,t) x_t`` as one
sparse matmul. The scores come from the layer-0 entity representation and are shared by all
layers, as in KGAT (the paper's Eq. 11 carries no layer index; SPEC decision, see
``score_per_layer``). Scores are computed per relation segment under activation
checkpointing, so no |edges| x d tensor is kept for the backward pass.

Cost: the scores are O(|edges| d^2) per step, which dominates a SLIF-MR step on a large KG.
``attention_every=k`` recomputes them (with gradient to W_r, e_r and the embeddings) every k-th
training step and reuses the detached weights in between, as KGAT's own code refreshes its
attentive Laplacian periodically; ``k = 1`` (default) is the exact per-step computation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from slifmr.graphs.kg import kg_propagate, segment_softmax


def _segment_scores(x: Tensor, w: Tensor, e: Tensor, heads: Tensor, tails: Tensor) -> Tensor:
    """Scores of the edges of one relation: (W x_t) . tanh(W x_h + e_r); x (N,d), w (d,d)."""
    xt = x[tails] @ w.T  # (E_r, d)
    xh = torch.tanh(x[heads] @ w.T + e)  # (E_r, d)
    return (xt * xh).sum(-1)


class KGAttentionEncoder(nn.Module):
    """Entity representations from the KG; ``n_relations`` counts inverse and ``sim`` relations."""

    def __init__(self, n_relations: int, dim: int, n_layers: int, chunk_edges: int = 1 << 18,
                 score_per_layer: bool = False, attention_every: int = 1):
        super().__init__()
        if attention_every < 1:
            raise ValueError(f"attention_every must be >= 1, got {attention_every}")
        self.attention_every = attention_every
        self._calls = 0
        self._cached: tuple[Tensor, Tensor] | None = None  # (heads tensor it was built for, weights)
        self.n_layers = n_layers
        self.chunk_edges = chunk_edges
        self.score_per_layer = score_per_layer
        self.rel_emb = nn.Parameter(torch.empty(n_relations, dim))
        self.rel_w = nn.Parameter(torch.empty(n_relations, dim, dim))
        nn.init.xavier_uniform_(self.rel_emb)
        nn.init.xavier_uniform_(self.rel_w)

    def edge_weights(self, x: Tensor, heads: Tensor, tails: Tensor, rel_ptr: Tensor, n_nodes: int) -> Tensor:
        """(E,) attention weights; edges are sorted by relation, ``rel_ptr`` (R+1,) CSR offsets."""
        ptr = rel_ptr.tolist()
        parts = []
        for r in range(len(ptr) - 1):  # one matmul pair per relation (R is small; edges are not looped)
            for a in range(ptr[r], ptr[r + 1], self.chunk_edges):
                b = min(a + self.chunk_edges, ptr[r + 1])
                args = (x, self.rel_w[r], self.rel_emb[r], heads[a:b], tails[a:b])
                if torch.is_grad_enabled():
                    parts.append(checkpoint(_segment_scores, *args, use_reentrant=False))
                else:
                    parts.append(_segment_scores(*args))
        scores = torch.cat(parts) if parts else x.new_zeros(0)
        return segment_softmax(scores, heads, n_nodes)

    def _weights(self, x0: Tensor, heads: Tensor, tails: Tensor, rel_ptr: Tensor, n: int) -> Tensor:
        """Exact scores, or the cached ones between refreshes (only while training, same graph)."""
        if not (self.training and torch.is_grad_enabled()) or self.attention_every == 1:
            return self.edge_weights(x0, heads, tails, rel_ptr, n)
        stale = self._cached is None or self._cached[0] is not heads
        if stale or self._calls % self.attention_every == 0:
            w = self.edge_weights(x0, heads, tails, rel_ptr, n)
            self._cached = (heads, w.detach())
            self._calls = 1
            return w
        self._calls += 1
        return self._cached[1]

    def forward(self, x0: Tensor, heads: Tensor, tails: Tensor, rel_ptr: Tensor) -> Tensor:
        """x0: (N, d) layer-0 entity representations -> (N, d) mean over layers 0..L_k (Eq. 13)."""
        n = x0.shape[0]
        if self.n_layers == 0 or heads.numel() == 0:
            return x0
        w = self._weights(x0, heads, tails, rel_ptr, n)
        x, acc = x0, x0
        for _ in range(self.n_layers):
            if self.score_per_layer and x is not x0:
                w = self.edge_weights(x, heads, tails, rel_ptr, n)
            x = kg_propagate(heads, tails, w, x, n)
            acc = acc + x
        return acc / (self.n_layers + 1)

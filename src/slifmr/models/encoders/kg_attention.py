"""Relation-aware KG attention encoder (Eq. 10-13).

``alpha_hat(h,r,t) = (W_r x_t)^T tanh(W_r x_h + e_r)``, softmax over each head's triples
(a segment softmax), then every layer propagates ``x_h <- sum_t alpha(h,r,t) x_t`` as one
sparse matmul. The scores come from the layer-0 entity representation and are shared by all
layers, as in KGAT (the paper's Eq. 11 carries no layer index; SPEC decision, see
``score_per_layer``).

Scores are computed on the *distinct* (relation, head) and (relation, tail) pairs, never per
edge, and for all relations at once: ``a(h) = tanh(W_r x_h + e_r)`` once per (relation, head)
pair, ``W_r x_t`` once per (relation, tail) pair, or instead ``u(h) = W_r^T a(h)`` (then
``score = x_t . u(h)``) for a relation with fewer distinct heads than tails. Each of these is one
tiled batched matmul over all relations (:class:`~slifmr.graphs.kg.SegmentPlan`: rows grouped by
relation in tiles of 256, each tile's W_r gathered, one ``bmm``), and the per-edge dot products
are one sampled dense-dense product on the block-diagonal (head pairs x tail pairs) pattern. So
a step runs a constant number of kernels whatever the number of relations (issue 13;
``benchmarks/op_count.py``), and no |edges| x d tensor is built. The layout is precomputed with
the graph (:class:`~slifmr.graphs.kg.KGStructure`).

``attention_every=k`` recomputes the scores (with gradient to W_r, e_r and the embeddings) every
k-th training step and reuses the detached weights in between, as KGAT's own code refreshes its
attentive Laplacian periodically; ``k = 1`` (default) is the exact per-step computation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from slifmr.graphs.kg import KGStructure, SparsePattern, kg_propagate, kg_structure, segment_softmax


class _PairScores(torch.autograd.Function):
    """(E,) ``left[hp_e] . right[tp_e]`` over the (head pairs x tail pairs) pattern: one sampled
    dense-dense product forward; backward ``grad_left = G @ right``, ``grad_right = G^T @ left``
    (G: the pattern with the edges' gradients), two CSR products. No (E, k) tensor."""

    @staticmethod
    def forward(ctx, left: Tensor, right: Tensor, pattern: SparsePattern) -> Tensor:
        left, right = left.detach().contiguous(), right.detach().contiguous()
        ctx.save_for_backward(left, right)
        ctx.pattern = pattern
        return pattern.item_values(pattern.sddmm(left, right))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        left, right = ctx.saved_tensors
        p: SparsePattern = ctx.pattern
        g = p.entry_values(grad.contiguous())
        grad_left = p.mm(g, right) if ctx.needs_input_grad[0] else None
        grad_right = p.t_mm(g, left) if ctx.needs_input_grad[1] else None
        return grad_left, grad_right, None


def relation_scores(x: Tensor, rel_w: Tensor, rel_emb: Tensor, structure: KGStructure) -> Tensor:
    """(E,) ``(W_r x_t) . tanh(W_r x_h + e_r)`` of every edge of ``structure`` (``rel_w`` (R, k, d),
    ``rel_emb`` (R, k)); differentiable, no |edges| x d tensor and no loop over relations: a
    constant number of kernels whatever R (three tiled batched matmuls, gathers, one sampled
    product; :class:`~slifmr.graphs.kg.RelationPairs`). The KG attention score of SLIF-MR
    (Eq. 11) and of KGAT (Eq. 4), which share it."""
    pr = structure.pairs
    if structure.n_edges == 0:
        return x.new_zeros(0)
    if pr.fold and rel_w.shape[1] != rel_w.shape[2]:
        raise ValueError(f"W_r is {tuple(rel_w.shape[1:])}, not square: build the structure with can_fold=False")
    a = torch.tanh(pr.plan_head.matmul(x, rel_w, transpose=False, bias=rel_emb))  # (n_hp, k)
    left = a
    if pr.fold:  # u = W_r^T a on the folding relations' head pairs
        u = pr.plan_fold.matmul(a, rel_w, transpose=True)  # (n_fold, d)
        left = torch.cat([a, u]).index_select(0, pr.left_index)  # (n_hp, k)
    b = pr.plan_tail.matmul(x, rel_w, transpose=False)  # (n_proj, k): W_r x_t
    right = torch.cat([b, x]).index_select(0, pr.right_index) if pr.fold else b.index_select(0, pr.right_index)
    return _PairScores.apply(left, right, pr.pattern)


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
        self._structure: tuple[Tensor, KGStructure] | None = None  # built here when not passed in
        self.n_layers = n_layers
        self.chunk_edges = chunk_edges  # unused since scores are per distinct head (kept for configs)
        self.score_per_layer = score_per_layer
        self.rel_emb = nn.Parameter(torch.empty(n_relations, dim))
        self.rel_w = nn.Parameter(torch.empty(n_relations, dim, dim))
        nn.init.xavier_uniform_(self.rel_emb)
        nn.init.xavier_uniform_(self.rel_w)

    def structure(self, heads: Tensor, tails: Tensor, rel_ptr: Tensor, n_nodes: int) -> KGStructure:
        """The precomputed patterns of this edge list (built once per ``heads`` tensor)."""
        if self._structure is None or self._structure[0] is not heads:
            self._structure = (heads, kg_structure(heads, tails, rel_ptr, n_nodes))
        return self._structure[1]

    def edge_weights(self, x: Tensor, heads: Tensor, tails: Tensor, rel_ptr: Tensor, n_nodes: int,
                     structure: KGStructure | None = None) -> Tensor:
        """(E,) attention weights; edges are sorted by relation, ``rel_ptr`` (R+1,) CSR offsets."""
        st = structure if structure is not None else self.structure(heads, tails, rel_ptr, n_nodes)
        if st.n_cols != x.shape[0] or st.n_edges != heads.numel():
            raise ValueError(f"structure for {st.n_edges} edges over {st.n_cols} entities does not fit "
                             f"{heads.numel()} edges and x {tuple(x.shape)}")
        scores = relation_scores(x, self.rel_w, self.rel_emb, st)
        return segment_softmax(scores, heads, n_nodes)

    def _weights(self, x0: Tensor, heads: Tensor, tails: Tensor, rel_ptr: Tensor, n: int,
                 st: KGStructure) -> Tensor:
        """Exact scores, or the cached ones between refreshes (only while training, same graph)."""
        if not (self.training and torch.is_grad_enabled()) or self.attention_every == 1:
            return self.edge_weights(x0, heads, tails, rel_ptr, n, st)
        stale = self._cached is None or self._cached[0] is not heads
        if stale or self._calls % self.attention_every == 0:
            w = self.edge_weights(x0, heads, tails, rel_ptr, n, st)
            self._cached = (heads, w.detach())
            self._calls = 1
            return w
        self._calls += 1
        return self._cached[1]

    def forward(self, x0: Tensor, heads: Tensor, tails: Tensor, rel_ptr: Tensor,
                structure: KGStructure | None = None) -> Tensor:
        """x0: (N, d) layer-0 entity representations -> (N, d) mean over layers 0..L_k (Eq. 13).

        ``structure``: the edges' precomputed :class:`KGStructure` (the graph store's
        ``kg_edges(...).structure``); without it, it is built here once per ``heads`` tensor."""
        n = x0.shape[0]
        if self.n_layers == 0 or heads.numel() == 0:
            return x0
        st = structure if structure is not None else self.structure(heads, tails, rel_ptr, n)
        w = self._weights(x0, heads, tails, rel_ptr, n, st)
        x, acc = x0, x0
        for _ in range(self.n_layers):
            if self.score_per_layer and x is not x0:
                w = self.edge_weights(x, heads, tails, rel_ptr, n, st)
            x = kg_propagate(heads, tails, w, x, n, pattern=st.adjacency)
            acc = acc + x
        return acc / (self.n_layers + 1)

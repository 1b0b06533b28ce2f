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
tiled batched matmul over all relations (rows grouped by relation in tiles of 128, each tile's W_r
gathered, one ``bmm``), and the per-edge dot products are one sampled dense-dense product on the
block-diagonal (head-pair slots x right rows) pattern. So a step runs a constant number of
kernels whatever the number of relations (issue 13; ``benchmarks/op_count.py``), and no
|edges| x d tensor is built. On the CPU the head side runs in chunks of tiles (at most
``SCORE_CHUNK_ROWS`` slots, so a chunk's temporaries stay in cache and out of freshly mapped
memory; at Amazon-Book scale the whole-tensor version cost 2.6 CPU s of a 4.3 s step, the
chunked one 0.85); a GPU runs one chunk. The layout is precomputed with the graph
(:class:`~slifmr.graphs.kg.KGStructure`, :class:`~slifmr.graphs.kg.RelationPairs`).

``attention_every=k`` recomputes the scores (with gradient to W_r, e_r and the embeddings) every
k-th training step and reuses the detached weights in between, as KGAT's own code refreshes its
attentive Laplacian periodically; ``k = 1`` (default) is the exact per-step computation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from slifmr.graphs.kg import (KGStructure, RelationPairs, ScoreChunk, kg_propagate, kg_structure,
                              segment_softmax)


def _chunk_inputs(x: Tensor, w: Tensor, pr: RelationPairs, c: ScoreChunk) -> tuple[Tensor, Tensor, Tensor]:
    """A chunk's (relations (nt,), wt (nt, k, d) each tile's W_r, xp (nt, T, d) its slots' head rows)."""
    rel = pr.tile_rel[c.t0 : c.t1]
    xp = x.index_select(0, pr.gather[c.t0 * pr.tile : c.t1 * pr.tile]).view(-1, pr.tile, x.shape[1])
    return rel, w.index_select(0, rel), xp


def _left(a: Tensor, wt: Tensor, c: ScoreChunk) -> Tensor:
    """(nt*T, k|d) a chunk's left rows: ``a`` on projecting tiles, ``u = W_r^T a`` on folding ones."""
    p = c.n_plain
    if p == a.shape[0]:
        left = a
    elif p == 0:
        left = torch.bmm(a, wt)  # (nt, T, d): rows a W_r
    else:
        left = torch.empty_like(a)
        left[:p] = a[:p]
        torch.bmm(a[p:], wt[p:], out=left[p:])
    return left.view(-1, left.shape[2])


class _ChunkedScores(torch.autograd.Function):
    """(E,) ``left(slot_e) . right[r_e]`` with ``left = a = tanh(W_r x_h + e_r)``, or ``u = W_r^T a``
    on folding tiles, computed chunk by chunk of slot tiles (:attr:`RelationPairs.chunks`): one
    gather and one or two batched matmuls over all of a chunk's relations, then a sampled product
    on its rows. Forward keeps ``a`` (n_slots, k) for the backward (tanh is the costliest pass on
    the CPU, so it is not recomputed), which runs each chunk back through its two CSR products,
    tanh and the batched matmuls. Every other temporary is one chunk's: in cache on the CPU; a GPU
    runs one chunk."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, bias: Tensor, right: Tensor, pr: RelationPairs) -> Tensor:
        x, w, bias, right = x.detach(), w.detach(), bias.detach(), right.detach().contiguous()
        out = x.new_empty(pr.pattern.nnz)  # entry scores
        a_all = x.new_empty(pr.tile_rel.numel(), pr.tile, w.shape[1])  # (n_tiles, T, k)
        for c in pr.chunks:
            rel, wt, xp = _chunk_inputs(x, w, pr, c)
            a = torch.baddbmm(bias.index_select(0, rel).unsqueeze(1), xp, wt.transpose(1, 2),
                              out=a_all[c.t0 : c.t1]).tanh_()  # (nt, T, k)
            out[c.e0 : c.e1] = c.pattern.sddmm(_left(a, wt, c), right[c.c0 : c.c1])
        ctx.save_for_backward(x, w, right, a_all)
        ctx.pairs = pr
        return pr.pattern.item_values(out)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        x, w, right, a_all = ctx.saved_tensors
        pr: RelationPairs = ctx.pairs
        need_x, need_w, need_b, need_r = ctx.needs_input_grad[:4]
        g = pr.pattern.entry_values(grad.contiguous())  # (nnz,)
        grad_x, grad_w, grad_r = (torch.zeros_like(v) if need else None
                                  for v, need in ((x, need_x), (w, need_w), (right, need_r)))
        grad_b = w.new_zeros(w.shape[:2]) if need_b else None
        for c in pr.chunks:
            rel, wt, xp = _chunk_inputs(x, w, pr, c)
            a = a_all[c.t0 : c.t1]  # (nt, T, k)
            gc = g[c.e0 : c.e1]
            if need_r:
                c.pattern.t_mm(gc, _left(a, wt, c), accumulate=grad_r[c.c0 : c.c1])  # += G_c^T left
            if not (need_x or need_w or need_b):
                continue
            gl = c.pattern.mm(gc, right[c.c0 : c.c1]).view(-1, pr.tile, right.shape[1])  # (nt, T, k|d); padding: 0
            p = c.n_plain
            if p < a.shape[0]:  # folding tiles, left = a W_r (rows): d/dW_r += a^T gl, d/da = gl W_r^T
                if need_w:
                    grad_w.index_add_(0, rel[p:], torch.bmm(a[p:].transpose(1, 2), gl[p:]))
                gl[p:] = torch.bmm(gl[p:], wt[p:].transpose(1, 2))  # (nt - p, T, k)
            gpre = torch.ops.aten.tanh_backward(gl, a)  # through tanh: gl (1 - a^2), one pass (autograd's op)
            if need_b:
                grad_b.index_add_(0, rel, gpre.sum(1))
            if need_w:
                grad_w.index_add_(0, rel, torch.bmm(gpre.transpose(1, 2), xp))  # (nt, k, d)
            if need_x:
                grad_x.index_add_(0, pr.gather[c.t0 * pr.tile : c.t1 * pr.tile],
                                  torch.bmm(gpre, wt).view(-1, x.shape[1]))
        return grad_x, grad_w, grad_b, grad_r, None


def relation_scores(x: Tensor, rel_w: Tensor, rel_emb: Tensor, structure: KGStructure) -> Tensor:
    """(E,) ``(W_r x_t) . tanh(W_r x_h + e_r)`` of every edge of ``structure`` (``rel_w`` (R, k, d),
    ``rel_emb`` (R, k)); differentiable, no |edges| x d tensor and no loop over relations: a
    constant number of kernels per chunk whatever R (tiled batched matmuls, gathers, one sampled
    product; :class:`~slifmr.graphs.kg.RelationPairs`), one chunk on a GPU. The KG attention
    score of SLIF-MR (Eq. 11) and of KGAT (Eq. 4), which share it."""
    pr = structure.pairs
    if structure.n_edges == 0:
        return x.new_zeros(0)
    if pr.fold and rel_w.shape[1] != rel_w.shape[2]:
        raise ValueError(f"W_r is {tuple(rel_w.shape[1:])}, not square: build the structure with can_fold=False")
    b = pr.plan_tail.matmul(x, rel_w, transpose=False)  # (n_proj, k): W_r x_t
    right = torch.cat([b, x]) if pr.fold else b  # (n_right, k): rows the edges' tails score with
    return _ChunkedScores.apply(x, rel_w, rel_emb, right, pr)


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

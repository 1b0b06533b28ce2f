"""Graph views and sparse operators for the KG baselines (KGAT, KGIN, KGCL).

Pure functions on tensors:

* :func:`collaborative_kg` -- KGAT's collaborative knowledge graph: KG triples with inverses plus
  the train interactions as two more relations, users as extra nodes.
* :func:`head_index` / :func:`sample_kg_triples` -- head-uniform (h, r, t, t') batches for a
  KG-embedding loss, vectorised (no Python loop over heads or triples).
* :func:`relational_aggregate` -- KGIN's entity aggregation ``sum_e e_r ⊙ x_t`` (mean with
  ``normalise``) as a custom autograd op that never keeps an |edges| x d tensor.

Node conventions follow the rest of the package: item ``i`` is entity ``i``, other entities follow;
in the collaborative KG user ``u`` is node ``n_entities + u``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from slifmr.errors import DataError
from slifmr.graphs.kg import add_inverse


def collaborative_kg(kg: Tensor, users: Tensor, items: Tensor, n_entities: int, n_users: int,
                     n_relations: int) -> Tensor:
    """KGAT's collaborative KG as (E, 3) ``(head, relation, tail)`` rows over ``n_entities + U`` nodes.

    Relations: ``0..R-1`` the KG's, ``R..2R-1`` their inverses, ``2R`` = interact (user -> item),
    ``2R+1`` = interacted-by (item -> user); ``2R + 2`` in all. Repeated rows are merged and the
    result is sorted by (relation, head, tail), so each relation is one contiguous segment.

    Args:
        kg: (m, 3) int64 KG triples, relations in ``[0, n_relations)``.
        users, items: (n,) int64 train interactions.
        n_entities: entities (items included); user ``u`` becomes node ``n_entities + u``.
        n_users: U.
        n_relations: R, the KG's relation count (without inverses).
    """
    kg = kg.reshape(-1, 3).long()
    u = users.reshape(-1).long() + n_entities
    i = items.reshape(-1).long()
    interact = torch.full_like(u, 2 * n_relations)
    ui = torch.stack([u, interact, i], 1)
    iu = torch.stack([i, interact + 1, u], 1)
    triples = torch.cat([add_inverse(kg, n_relations), ui, iu])
    n_nodes = n_entities + n_users
    key = (triples[:, 1] * n_nodes + triples[:, 0]) * n_nodes + triples[:, 2]
    ukey = torch.unique(key)  # sorted: (relation, head, tail)
    tail = ukey % n_nodes
    head = (ukey // n_nodes) % n_nodes
    rel = ukey // (n_nodes * n_nodes)
    return torch.stack([head, rel, tail], 1)


def relation_ptr(relations: Tensor, n_relations: int) -> Tensor:
    """(R+1,) CSR offsets of each relation's segment in a relation-sorted edge list."""
    ptr = torch.zeros(n_relations + 1, dtype=torch.long)
    ptr[1:] = torch.cumsum(torch.bincount(relations.cpu(), minlength=n_relations), 0)
    return ptr


def edge_relations(ptr: Tensor, n_relations: int, model: str) -> Tensor:
    """(E,) relation id of each edge of a relation-sorted edge list, from its CSR offsets ``ptr``
    (R'+1,) (the inverse of :func:`relation_ptr`), on ``ptr``'s device. A model with a fixed
    table of ``n_relations`` relation embeddings cannot take more: the KG view's self-loop
    ``sim`` relation (``kg_self_loop``) adds one, so an id ``>= n_relations`` is a DataError
    naming ``model`` (its display name, e.g. ``"KGIN"``)."""
    counts = ptr[1:] - ptr[:-1]  # (R',)
    rels = torch.repeat_interleave(torch.arange(counts.numel(), device=ptr.device), counts)
    if rels.numel() and int(rels.max()) >= n_relations:
        raise DataError(f"model={model.lower()}: the KG view has relation ids up to {int(rels.max())} but the model "
                        f"has {n_relations} (self-loop 'sim' edges are not supported by {model})")
    return rels


def head_index(heads: Tensor, n_nodes: int) -> tuple[Tensor, Tensor, Tensor]:
    """(order, ptr, present): ``order`` sorts the edges by head (stable), ``ptr`` (n_nodes + 1,) are
    the CSR offsets of each head's edges in that order, ``present`` the heads with >= 1 edge."""
    heads = heads.reshape(-1).long()
    order = torch.argsort(heads, stable=True)
    counts = torch.bincount(heads, minlength=n_nodes)
    ptr = torch.zeros(n_nodes + 1, dtype=torch.long, device=heads.device)
    ptr[1:] = torch.cumsum(counts, 0)
    return order, ptr, torch.nonzero(counts, as_tuple=True)[0]


def sample_kg_triples(triples: Tensor, order: Tensor, ptr: Tensor, present: Tensor, batch_size: int,
                      tail_ranges: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A KGAT-style KG batch: heads uniform over the heads that have edges, one uniform edge of each,
    one corrupted tail drawn uniformly from the positive tail's node range (entities or users).

    Negatives are drawn without rejection (a false negative needs the corrupted tail to be one of
    the head's few true tails: rare, and the official code's rejection loop is per triple).

    Args:
        triples: (E, 3) ``(head, relation, tail)``.
        order, ptr, present: :func:`head_index` of ``triples[:, 0]``.
        batch_size: triples per batch (sampled with replacement).
        tail_ranges: (K+1,) sorted node-range boundaries, e.g. ``[0, n_entities, n_nodes]``: the
            negative tail lies in the same range as the positive one.
        generator: seeded by the caller (e.g. by (seed, epoch, step)); on ``triples``' device, the
            draws are made there and nothing crosses between host and device (a CPU generator
            with a CUDA ``triples`` works, with a copy per draw).

    Returns:
        (h, r, t, t_neg), each (batch_size,) int64 on ``triples``' device. A constant number of
        operations whatever ``batch_size`` and the number of triples (no loop over either).
    """
    dev = triples.device
    gdev = generator.device
    pick = torch.randint(0, present.numel(), (batch_size,), generator=generator, device=gdev).to(dev)
    h = present[pick]
    start, deg = ptr[h], ptr[h + 1] - ptr[h]
    offset = (torch.rand(batch_size, generator=generator, device=gdev).to(dev) * deg).long().clamp_max(deg - 1)
    e = order[start + offset]
    r, t = triples[e, 1], triples[e, 2]
    ranges = tail_ranges.to(dev)
    seg = torch.searchsorted(ranges, t, right=True) - 1  # range of the positive tail
    lo, hi = ranges[seg], ranges[seg + 1]
    u = torch.rand(batch_size, generator=generator, device=gdev).to(dev)
    t_neg = lo + (u * (hi - lo)).long().clamp_max(hi - lo - 1)
    return h, r, t, t_neg


class _ChunkBuffers:
    """Reused (chunk, d) work buffers for the chunked per-edge ops below.

    A fresh (65536, 64) float32 temporary is 16 MB; allocated anew for every gather and product of
    every chunk, such temporaries were most of KGRec's step (profiled: the gathers and products
    ran 2-3x slower than the same ops writing into an existing buffer, the difference being page
    faults on fresh memory). Writing into a few buffers allocated once per call computes the same
    values (the same elementwise products in the same order)."""

    def __init__(self, like: Tensor, n_edges: int, chunk: int, count: int):
        rows = max(1, min(chunk, n_edges))
        self._bufs = [like.new_empty(rows, like.shape[1]) for _ in range(count)]

    def take(self, m: int) -> list[Tensor]:
        """The buffers' first ``m`` rows (contiguous views)."""
        return [b[:m] for b in self._bufs]


class _RelationalAggregate(torch.autograd.Function):
    """``out[h] = sum_e w_e * rel[r_e] ⊙ x[t_e]``, chunked over edges in both passes."""

    @staticmethod
    def forward(ctx, x: Tensor, rel: Tensor, heads: Tensor, tails: Tensor, rels: Tensor, scale: Tensor,
                n_out: int, chunk: int) -> Tensor:
        x, rel = x.detach(), rel.detach()
        out = x.new_zeros(n_out, x.shape[1])
        bufs = _ChunkBuffers(x, heads.numel(), chunk, 2)
        for a in range(0, heads.numel(), chunk):
            h, t, r = heads[a : a + chunk], tails[a : a + chunk], rels[a : a + chunk]
            msg, xr = bufs.take(h.numel())
            torch.index_select(x, 0, t, out=msg).mul_(torch.index_select(rel, 0, r, out=xr))  # (c, d)
            out.index_add_(0, h, msg.mul_(scale[a : a + chunk].unsqueeze(1)))
        ctx.save_for_backward(x, rel, heads, tails, rels, scale)
        ctx.chunk = chunk
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        x, rel, heads, tails, rels, scale = ctx.saved_tensors
        need_x, need_rel = ctx.needs_input_grad[:2]
        grad_x = torch.zeros_like(x) if need_x else None
        grad_rel = torch.zeros_like(rel) if need_rel else None
        grad = grad.contiguous()
        bufs = _ChunkBuffers(x, heads.numel(), ctx.chunk, 3)
        for a in range(0, heads.numel(), ctx.chunk):
            h, t, r = heads[a : a + ctx.chunk], tails[a : a + ctx.chunk], rels[a : a + ctx.chunk]
            g, other, prod = bufs.take(h.numel())
            torch.index_select(grad, 0, h, out=g).mul_(scale[a : a + ctx.chunk].unsqueeze(1))  # (c, d)
            if need_x:
                grad_x.index_add_(0, t, torch.mul(g, torch.index_select(rel, 0, r, out=other), out=prod))
            if need_rel:
                grad_rel.index_add_(0, r, torch.mul(g, torch.index_select(x, 0, t, out=other), out=prod))
        return grad_x, grad_rel, None, None, None, None, None, None


def relational_aggregate(heads: Tensor, tails: Tensor, rels: Tensor, x: Tensor, rel_emb: Tensor, n_out: int,
                         normalise: bool = True, chunk: int = 1 << 16) -> Tensor:
    """KGIN's relational path-aware aggregation: ``out[h] = mean_{(h,r,t)} e_r ⊙ x_t`` (Eq. 7).

    Gradients flow to ``x`` and ``rel_emb``; forward and backward run over chunks of ``chunk`` edges,
    so memory is O(chunk x d) beyond the inputs (an autograd graph of gathers would keep two
    |edges| x d tensors per hop: ~0.7 GB per hop at Amazon-Book scale).

    Args:
        heads, tails, rels: (E,) int64 edges; heads in ``[0, n_out)``, tails rows of ``x``,
            rels rows of ``rel_emb``.
        x: (N, d) entity representations; rel_emb: (R, d) relation embeddings.
        n_out: output rows. ``normalise``: divide by each head's edge count (heads without edges
            get zeros), else the plain sum.

    Returns:
        (n_out, d).
    """
    heads, tails, rels = heads.reshape(-1).long(), tails.reshape(-1).long(), rels.reshape(-1).long()
    if not (heads.numel() == tails.numel() == rels.numel()):
        raise ValueError(f"heads/tails/rels differ in length: {(heads.numel(), tails.numel(), rels.numel())}")
    if normalise:
        deg = torch.bincount(heads, minlength=n_out).clamp_min(1).to(x.dtype)
        scale = deg.reciprocal().index_select(0, heads)
    else:
        scale = torch.ones(heads.numel(), dtype=x.dtype, device=x.device)
    return _RelationalAggregate.apply(x, rel_emb, heads, tails, rels, scale, n_out, chunk)


# -- per-edge relation-aware products (KGRec, KRDN): relation-agnostic, chunked over edges ----
def _head_slices(d: int, n_heads: int) -> int:
    if d % n_heads:
        raise ValueError(f"dimension {d} is not divisible by {n_heads} heads")
    return d // n_heads


class _EdgeProduct(torch.autograd.Function):
    """``s[e, k] = sum_{j in head k} prod_f t_f[i_f[e], j]`` over 2 or 3 gathered factors ``t_f``
    (tables first, then their indices), chunked over edges."""

    @staticmethod
    def forward(ctx, n_heads: int, chunk: int, *args: Tensor) -> Tensor:
        m = len(args) // 2
        tables, idx = [t.detach() for t in args[:m]], args[m:]
        n, d = idx[0].numel(), tables[0].shape[1]
        dh = _head_slices(d, n_heads)
        out = tables[0].new_empty(n, n_heads)
        bufs = _ChunkBuffers(tables[0], n, chunk, m)
        for s in range(0, n, chunk):
            e = slice(s, s + chunk)
            xs = bufs.take(idx[0][e].numel())
            prod = torch.index_select(tables[0], 0, idx[0][e], out=xs[0])
            for t, i, x in zip(tables[1:], idx[1:], xs[1:]):
                prod.mul_(torch.index_select(t, 0, i[e], out=x))
            torch.sum(prod.view(-1, n_heads, dh), -1, out=out[e])
        ctx.save_for_backward(*tables, *idx)
        ctx.n_heads, ctx.chunk, ctx.m = n_heads, chunk, m
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        saved, m, n_heads, chunk = ctx.saved_tensors, ctx.m, ctx.n_heads, ctx.chunk
        tables, idx = saved[:m], saved[m:]
        dh = _head_slices(tables[0].shape[1], n_heads)
        grads = [torch.zeros_like(t) if need else None for t, need in zip(tables, ctx.needs_input_grad[2:2 + m])]
        bufs = _ChunkBuffers(tables[0], idx[0].numel(), chunk, m + 1)
        for s in range(0, idx[0].numel(), chunk):
            e = slice(s, s + chunk)
            *xs, prod = bufs.take(idx[0][e].numel())
            g = grad[e].unsqueeze(-1)  # (c, H, 1): each head's gradient on its slice
            for t, i, x in zip(tables, idx, xs):
                torch.index_select(t, 0, i[e], out=x)
            for k in range(m):
                if grads[k] is not None:  # g times the other factors, as (c, H, dh) views
                    others = [x for f, x in enumerate(xs) if f != k]
                    torch.mul(others[0].view(-1, n_heads, dh), g, out=prod.view(-1, n_heads, dh))
                    for x in others[1:]:
                        prod.mul_(x)
                    grads[k].index_add_(0, idx[k][e], prod)
        return (None, None, *grads, *([None] * m))


def edge_trilinear(a: Tensor, b: Tensor, c: Tensor, ia: Tensor, ib: Tensor, ic: Tensor, n_heads: int = 1,
                   chunk: int = 1 << 16) -> Tensor:
    """(E, n_heads) per-edge, per-head sums ``sum_j a[ia_e, j] b[ib_e, j] c[ic_e, j]`` over each head's
    slice of the ``d`` columns; e.g. the score ``q_h . (k_t ⊙ e_r)`` of KGRec's relation-aware
    attention (``a = q``, ``b = k``, ``c`` the relation table, indices heads/tails/relations).

    Differentiable in ``a``, ``b``, ``c``; forward and backward run over ``chunk`` edges at a time,
    so no |edges| x d tensor is kept."""
    ia, ib, ic = ia.reshape(-1).long(), ib.reshape(-1).long(), ic.reshape(-1).long()
    if not (ia.numel() == ib.numel() == ic.numel()):
        raise ValueError(f"index lengths differ: {(ia.numel(), ib.numel(), ic.numel())}")
    return _EdgeProduct.apply(n_heads, chunk, a, b, c, ia, ib, ic)


def edge_bilinear(a: Tensor, b: Tensor, ia: Tensor, ib: Tensor, chunk: int = 1 << 16) -> Tensor:
    """(E,) per-edge dot products ``sum_j a[ia_e, j] b[ib_e, j]`` (a sampled dense-dense product:
    the entries ``(a @ b.T)[ia, ib]`` without the dense matrix), e.g. KRDN's user-item affinities.

    Differentiable in ``a`` and ``b``; the same chunked op as :func:`edge_trilinear` with two factors:
    one gather fewer per chunk than ``edge_trilinear(a, b, ones, ...)`` (KRDN, ml-100k-kg: 0.83x its step)."""
    ia, ib = ia.reshape(-1).long(), ib.reshape(-1).long()
    if ia.numel() != ib.numel():
        raise ValueError(f"index lengths differ: {(ia.numel(), ib.numel())}")
    return _EdgeProduct.apply(1, chunk, a, b, ia, ib).squeeze(1)


class _WeightedRelationalAggregate(torch.autograd.Function):
    """``out[h, j] = sum_e w[e, head(j)] * rel[r_e, j] * x[t_e, j]``; gradients to x, rel and w."""

    @staticmethod
    def forward(ctx, x: Tensor, rel: Tensor, w: Tensor, heads: Tensor, tails: Tensor, rels: Tensor, n_out: int,
                chunk: int) -> Tensor:
        x, rel, w = x.detach(), rel.detach(), w.detach()
        n_heads = w.shape[1]
        dh = _head_slices(x.shape[1], n_heads)
        out = x.new_zeros(n_out, x.shape[1])
        bufs = _ChunkBuffers(x, heads.numel(), chunk, 2)
        for s in range(0, heads.numel(), chunk):
            e = slice(s, s + chunk)
            msg, xr = bufs.take(heads[e].numel())
            torch.index_select(x, 0, tails[e], out=msg).mul_(torch.index_select(rel, 0, rels[e], out=xr))
            msg.view(-1, n_heads, dh).mul_(w[e].unsqueeze(-1))
            out.index_add_(0, heads[e], msg)
        ctx.save_for_backward(x, rel, w, heads, tails, rels)
        ctx.chunk = chunk
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        x, rel, w, heads, tails, rels = ctx.saved_tensors
        need_x, need_rel, need_w = ctx.needs_input_grad[:3]
        n_heads = w.shape[1]
        dh = x.shape[1] // n_heads
        grad_x = torch.zeros_like(x) if need_x else None
        grad_rel = torch.zeros_like(rel) if need_rel else None
        grad_w = torch.zeros_like(w) if need_w else None
        grad = grad.contiguous()
        bufs = _ChunkBuffers(x, heads.numel(), ctx.chunk, 4)
        for s in range(0, heads.numel(), ctx.chunk):
            e = slice(s, s + ctx.chunk)
            g, xt, xr, prod = bufs.take(heads[e].numel())
            torch.index_select(grad, 0, heads[e], out=g)  # (c, d)
            torch.index_select(x, 0, tails[e], out=xt)
            torch.index_select(rel, 0, rels[e], out=xr)
            if need_w:
                torch.sum(torch.mul(g, xt, out=prod).mul_(xr).view(-1, n_heads, dh), -1, out=grad_w[e])
            if need_x or need_rel:
                g.view(-1, n_heads, dh).mul_(w[e].unsqueeze(-1))
                if need_x:
                    grad_x.index_add_(0, tails[e], torch.mul(g, xr, out=prod))
                if need_rel:
                    grad_rel.index_add_(0, rels[e], torch.mul(g, xt, out=prod))
        return grad_x, grad_rel, grad_w, None, None, None, None, None


def weighted_relational_aggregate(heads: Tensor, tails: Tensor, rels: Tensor, weights: Tensor, x: Tensor,
                                  rel_emb: Tensor, n_out: int, chunk: int = 1 << 16) -> Tensor:
    """``out[h] = sum_{(h,r,t)} w_e ⊙ (e_r ⊙ x_t)`` with per-edge weights that may carry gradient.

    ``weights`` (E,) or (E, H): with H heads, head ``k``'s weight scales columns
    ``k*d/H .. (k+1)*d/H`` (multi-head attention over relation-aware messages, KGRec's
    ``shared_layer_agg``); a 0/1 mask divided by the kept degree gives a masked mean (KRDN).
    Chunked like :func:`relational_aggregate`: no |edges| x d tensor is kept. Returns (n_out, d)."""
    heads, tails, rels = heads.reshape(-1).long(), tails.reshape(-1).long(), rels.reshape(-1).long()
    w = weights.reshape(heads.numel(), -1).to(x.dtype)
    if not (heads.numel() == tails.numel() == rels.numel()):
        raise ValueError(f"heads/tails/rels differ in length: {(heads.numel(), tails.numel(), rels.numel())}")
    return _WeightedRelationalAggregate.apply(x, rel_emb, w, heads, tails, rels, n_out, chunk)


def interaction_entries(users: Tensor, items: Tensor, n_users: int, n_items: int) -> dict[str, Tensor]:
    """The distinct train interactions as entries sorted by ``(user, item)``: ``rows``, ``cols``,
    ``keys = rows * n_items + cols`` (sorted, so a batch's ``(u, i)`` finds its entry by
    ``searchsorted``) and ``deg`` (U,) the users' interaction counts."""
    keys = torch.unique(users.reshape(-1).long() * n_items + items.reshape(-1).long())
    rows, cols = keys // n_items, keys % n_items
    return {"rows": rows, "cols": cols, "keys": keys, "deg": torch.bincount(rows, minlength=n_users)}

"""Knowledge-graph helpers (Eq. 10-12): inverse relations, per-head softmax, propagation.

``kg_propagate`` is a custom autograd function: ``torch.sparse.mm`` with a COO operand whose
values require grad computes its values' gradient as ``(grad @ x^T).sparse_mask(A)``, i.e. a
*dense* (n_entities x n_entities) matrix (160 GB for 200k entities). Here the forward is one
CSR sparse matmul with the weights detached, and the backward computes ``grad_x = A^T @ grad``
(one CSR matmul with a precomputed transpose) and ``grad_w[e] = grad[h_e] . x[t_e]`` (one
sampled dense-dense product on A's pattern), so no |E| x d tensor is ever built.

The pattern work (sorting edges, CSR offsets of A and A^T, the distinct (relation, node) pairs and
tile plans the attention scores are computed on, :class:`RelationPairs`) depends only on the edge list, so it is done once per graph
version: :func:`kg_structure` -> :class:`KGStructure`, cached by the graph store next to the
edges (:class:`KGEdges`). Each call then only gathers the new values into place.

On one CPU thread, 1.63M edges over 29.7k entities, d = 64 (Amazon-Book scale): a CSR product
takes ~0.08 s (COO built per call: ~0.11 s plus a sort per backward), and the weights' gradient
~0.05 s as a sampled product against ~0.5 s as chunked gathers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple

import torch
from torch import Tensor


def add_inverse(triples: Tensor, n_relations: int) -> Tensor:
    """Append the inverse of every triple.

    Args:
        triples: (m, 3) int64 ``(head, relation, tail)`` with relations in ``[0, n_relations)``.
        n_relations: number of original relations R.

    Returns:
        (2m, 3): the input rows, then ``(t, r + R, h)`` for each input row in the same order.
    """
    if triples.dim() != 2 or triples.shape[1] != 3:
        raise ValueError(f"triples must be (m, 3), got {tuple(triples.shape)}")
    inverse = torch.stack([triples[:, 2], triples[:, 1] + n_relations, triples[:, 0]], dim=1)
    return torch.cat([triples, inverse], dim=0)


def segment_softmax(scores: Tensor, segment: Tensor, n_segments: int) -> Tensor:
    """Softmax of edge scores within each segment (e.g. the triples of one head entity, Eq. 12).

    Numerically stable (the per-segment max, detached, is subtracted; softmax is invariant to
    it), vectorised, differentiable in ``scores``.

    Args:
        scores: (E,) or (E, H) float scores (H independent heads, each normalised on its own).
        segment: (E,) int64 segment id of each edge, in ``[0, n_segments)``; need not be sorted.
        n_segments: number of segments.

    Returns:
        Same shape as ``scores``; entries of each non-empty segment sum to 1. A segment whose
        scores are all ``-inf`` gives zeros (not NaN).
    """
    segment = segment.reshape(-1).long()
    if scores.shape[0] != segment.numel():
        raise ValueError(f"{scores.shape[0]} scores for {segment.numel()} segment ids")
    if scores.numel() == 0:
        return scores.clone()
    idx = segment.view(-1, *([1] * (scores.dim() - 1))).expand_as(scores)
    shape = (n_segments, *scores.shape[1:])
    seg_max = torch.full(shape, float("-inf"), dtype=scores.dtype, device=scores.device)
    seg_max = seg_max.scatter_reduce(0, idx, scores.detach(), reduce="amax", include_self=True)
    seg_max = torch.where(torch.isfinite(seg_max), seg_max, torch.zeros_like(seg_max))
    e = (scores - seg_max.index_select(0, segment)).exp()  # index_select: ~8x faster than [segment] on CPU
    denom = torch.zeros_like(seg_max).index_add(0, segment, e)
    return e / denom.index_select(0, segment).clamp_min(torch.finfo(scores.dtype).tiny)


def _csr(crow: Tensor, col: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    return torch.sparse_csr_tensor(crow, col, values, size, check_invariants=False)  # beta notice: graphs.adjacency


def _spmm(a: Tensor, x: Tensor) -> Tensor:
    """``a @ x`` for a CSR ``a``. On the CPU ``a @ x`` zero-fills its output and copies it once
    more before the product (two extra passes: ~20 % of a KG product at Amazon-Book scale);
    ``addmm`` with ``beta=0`` writes the product straight into an uninitialised output, the same
    values bit for bit. Elsewhere the plain product."""
    if x.device.type != "cpu":
        return a @ x
    out = x.new_empty(a.shape[0], x.shape[1])
    return torch.addmm(out, a, x, beta=0, out=out)


@dataclass(frozen=True, eq=False)
class SparsePattern:
    """The fixed sparsity pattern of an ``(n_rows, n_cols)`` matrix given as a list of
    ``(row, col)`` *items* (repeats allowed, their values are summed), precomputed once so that
    each product only swaps in new values.

    Entries are the distinct ``(row, col)`` pairs in CSR order (by row, then column). Values go
    item -> entry with :meth:`entry_values` and gradients entry -> item with :meth:`item_values`.
    The transpose is a second CSR over the same entries (``t_perm`` maps its order to theirs).
    """

    shape: tuple[int, int]
    n_items: int
    crow: Tensor  # (n_rows + 1,)
    col: Tensor  # (nnz,)
    inv: Tensor | None  # (n_items,) entry of each item; None: item i is entry i
    perm: Tensor | None  # (nnz,) item of each entry when no item repeats; None: identity or repeats
    t_crow: Tensor  # (n_cols + 1,)
    t_col: Tensor  # (nnz,) row of each transpose entry
    t_perm: Tensor  # (nnz,) entry of each transpose entry

    @property
    def nnz(self) -> int:
        return self.col.numel()

    @staticmethod
    def build(rows: Tensor, cols: Tensor, shape: tuple[int, int]) -> "SparsePattern":
        """Pattern of the items ``(rows[i], cols[i])``; rows in ``[0, shape[0])``, cols in ``[0, shape[1])``."""
        rows, cols = rows.reshape(-1).long(), cols.reshape(-1).long()
        n_rows, n_cols = int(shape[0]), int(shape[1])
        n_items = rows.numel()
        key = rows * n_cols + cols
        sorted_key, order = torch.sort(key, stable=True)
        new = torch.ones(n_items, dtype=torch.bool, device=rows.device)
        new[1:] = sorted_key[1:] != sorted_key[:-1]
        ukey = sorted_key[new]
        repeats = ukey.numel() != n_items
        identity = not repeats and bool((order == torch.arange(n_items, device=rows.device)).all())
        if identity:
            inv = perm = None
        else:
            inv = torch.empty_like(order)
            inv[order] = torch.cumsum(new, 0) - 1
            perm = None if repeats else order
        er, ec = ukey // n_cols, ukey % n_cols
        crow = torch.zeros(n_rows + 1, dtype=torch.long, device=rows.device)
        crow[1:] = torch.cumsum(torch.bincount(er, minlength=n_rows), 0)
        t_key, t_perm = torch.sort(ec * n_rows + er)
        t_r, t_col = t_key // n_rows, t_key % n_rows
        t_crow = torch.zeros(n_cols + 1, dtype=torch.long, device=rows.device)
        t_crow[1:] = torch.cumsum(torch.bincount(t_r, minlength=n_cols), 0)
        if ec.numel() < 2**31 - 1:  # int32 offsets/columns: no index conversion per product (adjacency.csr_int32)
            crow, ec, t_crow, t_col = crow.int(), ec.int(), t_crow.int(), t_col.int()
        return SparsePattern((n_rows, n_cols), n_items, crow, ec, inv, perm, t_crow, t_col, t_perm)

    def to(self, device: torch.device | str) -> "SparsePattern":
        return _tensor_fields_to(self, device)

    def row_block(self, r0: int, r1: int, c0: int = 0, c1: int | None = None) -> "SparsePattern":
        """Rows ``[r0, r1)`` as a pattern of their own (its items: their entries, in order), its
        columns shifted to ``[0, c1 - c0)``; every entry's column must lie in ``[c0, c1)``."""
        c1 = self.shape[1] if c1 is None else c1
        crow = self.crow.long()
        counts = crow[r0 + 1 : r1 + 1] - crow[r0:r1]
        rows = torch.repeat_interleave(torch.arange(r1 - r0, device=crow.device), counts)
        cols = self.col[int(crow[r0]) : int(crow[r1])].long() - c0
        return SparsePattern.build(rows, cols, (r1 - r0, c1 - c0))

    def entry_values(self, w: Tensor) -> Tensor:
        """(n_items,) item values -> (nnz,) entry values (repeated items summed)."""
        if self.inv is None:
            return w
        if self.perm is not None:
            return w.index_select(0, self.perm)
        return w.new_zeros(self.nnz).index_add_(0, self.inv, w)

    def item_values(self, v: Tensor) -> Tensor:
        """(nnz,) entry values -> (n_items,) (each item gets its entry's value)."""
        return v if self.inv is None else v.index_select(0, self.inv)

    def mm(self, values: Tensor, x: Tensor) -> Tensor:
        """``A @ x`` with entry values ``values``: (n_cols, d) -> (n_rows, d)."""
        return _spmm(_csr(self.crow, self.col, values, self.shape), x)

    def t_mm(self, values: Tensor, y: Tensor, accumulate: Tensor | None = None) -> Tensor:
        """``A^T @ y``: (n_rows, d) -> (n_cols, d); added into ``accumulate`` when given (on the
        CPU in place, without an (n_cols, d) temporary)."""
        t = _csr(self.t_crow, self.t_col, values.index_select(0, self.t_perm), (self.shape[1], self.shape[0]))
        if accumulate is None:
            return _spmm(t, y)
        return accumulate.addmm_(t, y) if y.device.type == "cpu" else accumulate.add_(t @ y)

    def sddmm(self, a: Tensor, b: Tensor) -> Tensor:
        """(nnz,) entry values ``a[row] . b[col]`` for a (n_rows, d), b (n_cols, d)."""
        if self.nnz == 0:
            return a.new_zeros(0)
        pattern = _csr(self.crow, self.col, a.new_zeros(self.nnz), self.shape)
        return torch.sparse.sampled_addmm(pattern, a, b.T, beta=0.0).values()


def _tensor_fields_to(obj, device):
    """A copy of a frozen dataclass with every tensor (or movable) field moved to ``device``."""
    movable = (Tensor, SparsePattern, SegmentPlan, ScoreChunk)

    def move(v):
        if isinstance(v, tuple):
            return tuple(move(u) for u in v)
        return v.to(device) if isinstance(v, movable) else v

    return type(obj)(**{f.name: move(getattr(obj, f.name)) for f in fields(obj)})


@dataclass(frozen=True, eq=False)
class SegmentPlan:
    """Rows grouped by relation, laid out in tiles of ``tile`` rows of one relation each, so that
    ``y_i = W_{rel_i} x_i`` for all rows of all relations is one batched matmul (``torch.bmm``
    over (n_tiles, tile, d) with each tile's W gathered) instead of a loop over relations.
    Padding is at most ``tile - 1`` rows per relation; the rows' order is kept."""

    n_rows: int
    tile: int
    gather: Tensor  # (n_tiles * tile,) source row of each padded slot (padding: row 0)
    tile_rel: Tensor  # (n_tiles,) relation of each tile
    slot: Tensor  # (n_rows,) padded slot of each row

    @staticmethod
    def build(src: Tensor, rel: Tensor, n_relations: int, tile: int = 256) -> "SegmentPlan":
        """Rows ``src`` (source row index per row), ``rel`` their relations, sorted by relation."""
        n = src.numel()
        dev = src.device
        counts = torch.bincount(rel, minlength=n_relations)  # (R,)
        tiles = (counts + tile - 1) // tile
        tile_rel = torch.repeat_interleave(torch.arange(n_relations, device=dev), tiles)
        first_tile = torch.cumsum(tiles, 0) - tiles  # (R,)
        first_row = torch.cumsum(counts, 0) - counts
        slot = first_tile[rel] * tile + (torch.arange(n, device=dev) - first_row[rel])
        gather = torch.zeros(tile_rel.numel() * tile, dtype=torch.long, device=dev)
        gather[slot] = src
        return SegmentPlan(n, tile, gather, tile_rel, slot)

    def to(self, device: torch.device | str) -> "SegmentPlan":
        return _tensor_fields_to(self, device)

    def matmul(self, x: Tensor, w: Tensor, transpose: bool, bias: Tensor | None = None) -> Tensor:
        """(n_rows, k_out): row i is ``W_r x[src_i]`` (``transpose``: ``W_r^T x``) + ``bias_r``.

        x: (N, k_in); w: (R, k_out, k_in), or (R, k_in, k_out) with ``transpose``; bias: (R, k_out).
        Differentiable in x, w and bias (autograd: gathers, one bmm)."""
        if self.n_rows == 0:
            return x.new_zeros(0, w.shape[2] if transpose else w.shape[1])
        xp = x.index_select(0, self.gather).view(-1, self.tile, x.shape[1])  # (n_tiles, tile, k_in)
        wt = w.index_select(0, self.tile_rel)  # (n_tiles, k_out, k_in) or (n_tiles, k_in, k_out)
        wt = wt if transpose else wt.transpose(1, 2)  # (n_tiles, k_in, k_out)
        if bias is None:
            y = torch.bmm(xp, wt)
        else:
            y = torch.baddbmm(bias.index_select(0, self.tile_rel).unsqueeze(1), xp, wt)
        return y.reshape(-1, y.shape[2]).index_select(0, self.slot)


# Head-pair rows per chunk of the attention scores (``RelationPairs.chunks``). On the CPU a chunk's
# work buffers (rows x d floats: 2 MB at d = 64) stay in cache and in the heap; computed whole, the
# Amazon-Book scale's 525k (relation, head) pairs made a dozen 134 MB tensors per step, each
# above glibc's 32 MB mmap threshold and so freshly page-faulted on every touch: 2.5 of the 4.3
# CPU s of a SLIF-MR step (issue 13). On a GPU one chunk covers up to 2M pairs, so the step's
# kernel count does not grow.
SCORE_CHUNK_ROWS = {"cpu": 1 << 16, "default": 1 << 21}


@dataclass(frozen=True, eq=False)
class ScoreChunk:
    """Tiles ``[t0, t1)`` of :class:`RelationPairs`' slot layout (slots ``t0*tile .. t1*tile``),
    their entries ``[e0, e1)`` of the score pattern, the right rows ``[c0, c1)`` they reach, and
    that block as a pattern of its own (its transpose is what the right side's gradient needs).
    A chunk of projecting relations reaches only their tail pairs' rows, a contiguous range: its
    gradient is added there, not into the whole right side once per chunk."""

    t0: int
    t1: int
    e0: int
    e1: int
    c0: int
    c1: int
    n_plain: int  # its first n_plain tiles project (left row a); the rest fold W_r in (u = W_r^T a)
    pattern: SparsePattern  # ((t1 - t0) * tile, c1 - c0): rows t0*tile.., columns c0.. of the score pattern

    def to(self, device: torch.device | str) -> "ScoreChunk":
        return _tensor_fields_to(self, device)


@dataclass(frozen=True, eq=False)
class RelationPairs:
    """The attention score's layout over all relations at once (Eq. 11,
    ``(W_r x_t) . tanh(W_r x_h + e_r)``): the distinct (relation, head) and (relation, tail)
    pairs, and the edges as a (head-pair slots x right rows) pattern, block-diagonal by relation.

    Per relation the cheaper side is projected: with fewer distinct tails than heads the tails
    (``B = W_r x_t``, score ``a(h) . B(t)``), else W_r is folded into the head side
    (``u = W_r^T a(h)``, score ``u(h) . x_t``), as the previous per-relation loop chose. The right
    side is ``cat([B, x])`` (``B`` of the projecting relations' tail pairs, ``plan_tail``); a head
    pair's left row ``a`` or ``u`` is computed in a *slot* of tiles of ``tile`` rows of one relation
    each (projecting relations' tiles first, then folding ones), so all relations' products are
    one batched matmul per chunk of tiles (:attr:`chunks`; padding slots have no edges; on a GPU,
    and on the CPU up to :data:`SCORE_CHUNK_ROWS` slots, one chunk)."""

    n_head_pairs: int
    n_tail_pairs: int
    head_node: Tensor  # (n_hp,) entity of each (relation, head) pair, sorted by (relation, head)
    tail_node: Tensor  # (n_tp,)
    fold: bool  # some relation folds W into the head side (only when k == d)
    plan_tail: SegmentPlan  # tail pairs of projecting relations: B = W_r x_t
    tile: int  # slots per tile
    gather: Tensor  # (n_slots,) x row (head entity) of each slot; padding: 0
    tile_rel: Tensor  # (n_tiles,) relation of each tile
    slot: Tensor  # (n_hp,) slot of each head pair
    pattern: SparsePattern  # (n_slots, n_right); items: the edges, at (their head pair's slot, right row)
    chunks: tuple[ScoreChunk, ...]  # the slot tiles in chunks of consecutive tiles

    def to(self, device: torch.device | str) -> "RelationPairs":
        return _tensor_fields_to(self, device)


def _distinct_pairs(rel: Tensor, node: Tensor, n_nodes: int) -> tuple[Tensor, Tensor, Tensor]:
    """(pair relation, pair node, pair index of each input) of the distinct (rel, node) pairs,
    sorted by (relation, node)."""
    key, inverse = torch.unique(rel * n_nodes + node, return_inverse=True)
    return key // n_nodes, key % n_nodes, inverse


def _score_chunks(pattern: SparsePattern, tile_fold: Tensor, tile: int, chunk_rows: int) -> tuple[ScoreChunk, ...]:
    """Consecutive tiles in chunks of at most ``chunk_rows`` slots (at least one tile), all of them
    in one chunk when they fit (``tile_fold`` (n_tiles,) bool, projecting tiles first). Build time
    only: it reads offsets on the host."""
    n_tiles = tile_fold.numel()
    n_plain = int((~tile_fold).sum())
    per = max(1, chunk_rows // tile)
    crow = pattern.crow.long()
    out = []
    for t0 in range(0, n_tiles, per):
        t1 = min(t0 + per, n_tiles)
        e0, e1 = int(crow[t0 * tile]), int(crow[t1 * tile])
        cols = pattern.col[e0:e1]
        c0, c1 = (int(cols.min()), int(cols.max()) + 1) if e1 > e0 else (0, 0)
        out.append(ScoreChunk(t0, t1, e0, e1, c0, c1, min(max(n_plain - t0, 0), t1 - t0),
                              pattern.row_block(t0 * tile, t1 * tile, c0, c1)))
    return tuple(out)


def relation_pairs(heads: Tensor, tails: Tensor, rel: Tensor, n_relations: int, n_nodes: int,
                   can_fold: bool = True, tile: int = 128, chunk_rows: int | None = None) -> RelationPairs:
    """:class:`RelationPairs` of edges ``(heads, rel, tails)`` (any order); tails index rows of
    an (n_nodes, d) matrix. ``can_fold=False``: always project the tails (W_r not square).
    ``chunk_rows``: slots per chunk (default by the edges' device, :data:`SCORE_CHUNK_ROWS`)."""
    dev = heads.device
    if chunk_rows is None:
        chunk_rows = SCORE_CHUNK_ROWS.get(dev.type, SCORE_CHUNK_ROWS["default"])
    h_rel, h_node, h_of_edge = _distinct_pairs(rel, heads, n_nodes)
    t_rel, t_node, t_of_edge = _distinct_pairs(rel, tails, n_nodes)
    n_hp, n_tp = h_node.numel(), t_node.numel()
    n_h = torch.bincount(h_rel, minlength=n_relations)
    n_t = torch.bincount(t_rel, minlength=n_relations)
    fold_rel = (n_t >= n_h) & can_fold  # (R,) fold W into the head side
    t_fold = fold_rel[t_rel]
    proj_rows = torch.nonzero(~t_fold).squeeze(1)  # tail pairs whose tails are projected
    right_index = torch.empty(n_tp, dtype=torch.long, device=dev)  # row of cat([B, x]) of each tail pair
    right_index[proj_rows] = torch.arange(proj_rows.numel(), device=dev)
    folded = torch.nonzero(t_fold).squeeze(1)
    right_index[folded] = proj_rows.numel() + t_node[folded]
    n_right = proj_rows.numel() + (n_nodes if bool(fold_rel.any()) else 0)
    # slots: head pairs grouped by (folds, relation), so projecting relations' tiles come first
    key = fold_rel[h_rel].long() * n_relations + h_rel  # (n_hp,)
    order = torch.argsort(key, stable=True)
    plan = SegmentPlan.build(h_node[order], key[order], 2 * n_relations, tile)
    slot = torch.empty_like(plan.slot)
    slot[order] = plan.slot
    tile_fold = plan.tile_rel >= n_relations
    pattern = SparsePattern.build(slot[h_of_edge], right_index[t_of_edge], (plan.gather.numel(), n_right))
    return RelationPairs(
        n_hp, n_tp, h_node, t_node, bool(fold_rel.any()),
        SegmentPlan.build(t_node[proj_rows], t_rel[proj_rows], n_relations, tile),
        tile, plan.gather, plan.tile_rel % n_relations, slot, pattern,
        _score_chunks(pattern, tile_fold, tile, chunk_rows))


@dataclass(frozen=True, eq=False)
class KGStructure:
    """Everything about a KG edge list that does not change between steps (built once per graph
    version, see :func:`kg_structure`): the propagation matrix pattern (rows = heads, cols =
    tails) and the all-relations layout the attention scores are computed on."""

    n_entities: int  # rows (head range)
    n_cols: int  # columns (tail range): rows of the entity matrix
    n_edges: int
    n_relations: int
    adjacency: SparsePattern
    pairs: RelationPairs

    def to(self, device: torch.device | str) -> "KGStructure":
        return KGStructure(self.n_entities, self.n_cols, self.n_edges, self.n_relations,
                           self.adjacency.to(device), self.pairs.to(device))


def _check_edges(heads: Tensor, tails: Tensor, n_entities: int, n_cols: int) -> None:
    if heads.numel() != tails.numel():
        raise ValueError(f"heads/tails differ in length: {(heads.numel(), tails.numel())}")
    if heads.numel():
        h_min, h_max, t_min, t_max = torch.stack([heads.min(), heads.max(), tails.min(), tails.max()]).tolist()
        if h_min < 0 or h_max >= n_entities or t_min < 0 or t_max >= n_cols:
            raise ValueError(f"heads must lie in [0, {n_entities}) and tails in [0, {n_cols})")


def kg_structure(heads: Tensor, tails: Tensor, rel_ptr: Tensor | None, n_entities: int,
                 n_cols: int | None = None, can_fold: bool = True, chunk_rows: int | None = None,
                 tile: int = 128) -> KGStructure:
    """Precompute the :class:`KGStructure` of an edge list sorted by relation, on its device.

    Args:
        heads, tails: (E,) int64; heads in ``[0, n_entities)``, tails in ``[0, n_cols)``.
        rel_ptr: (R+1,) offsets of each relation's edge segment; ``None``: one relation.
        n_entities: rows of the propagation matrix; ``n_cols`` its columns (default the same).
        can_fold: False when the score's W_r is not square (see :func:`relation_pairs`).
        chunk_rows: head-pair slots per chunk of the scores (default: :data:`SCORE_CHUNK_ROWS` of
            the edges' device; a structure moved to another device keeps its chunks).
        tile: slots per tile of one relation in the scores' batched matmuls.

    Any order within a relation is correct; repeated triples count once per copy.
    """
    heads, tails = heads.reshape(-1).long(), tails.reshape(-1).long()
    n_cols = n_entities if n_cols is None else int(n_cols)
    _check_edges(heads, tails, n_entities, n_cols)
    if rel_ptr is None:
        rel_ptr = torch.tensor([0, heads.numel()])
    ptr = rel_ptr.to(heads.device).long()
    counts = ptr[1:] - ptr[:-1]
    if int(ptr[0]) != 0 or int(ptr[-1]) != heads.numel() or bool((counts < 0).any()):
        raise ValueError(f"rel_ptr must run from 0 to {heads.numel()} without decreasing")
    n_rel = counts.numel()
    rel = torch.repeat_interleave(torch.arange(n_rel, device=heads.device), counts)  # (E,)
    pairs = relation_pairs(heads, tails, rel, n_rel, max(n_entities, n_cols), can_fold, tile, chunk_rows)
    adjacency = SparsePattern.build(heads, tails, (n_entities, n_cols))
    return KGStructure(n_entities, n_cols, heads.numel(), n_rel, adjacency, pairs)


class KGEdges(NamedTuple):
    """The KG view's edges sorted by (relation, head, tail) and what the encoders precompute on them."""

    heads: Tensor  # (E,) int64
    tails: Tensor  # (E,) int64
    ptr: Tensor  # (R+1,) int64 CSR offsets of each relation's edge segment
    structure: KGStructure  # built once per graph version (kg_structure)


class _KGPropagate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weights: Tensor, x: Tensor, pattern: SparsePattern):
        values = pattern.entry_values(weights.detach())
        x = x.detach()
        ctx.save_for_backward(values, x)
        ctx.pattern = pattern
        return pattern.mm(values, x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        values, x = ctx.saved_tensors
        pattern = ctx.pattern
        grad = grad.contiguous()
        grad_w = grad_x = None
        if ctx.needs_input_grad[1]:
            grad_x = pattern.t_mm(values, grad)
        if ctx.needs_input_grad[0]:
            grad_w = pattern.item_values(pattern.sddmm(grad, x))
        return grad_w, grad_x, None


def kg_propagate(
    heads: Tensor, tails: Tensor, weights: Tensor, x: Tensor, n_entities: int, chunk: int = 1 << 18,
    pattern: SparsePattern | None = None,
) -> Tensor:
    """``out[h] = sum_e weights[e] * x[tails[e]]`` over the edges with ``heads[e] == h`` (Eq. 10).

    One CSR sparse matmul forward; gradients flow to ``weights`` and ``x`` (custom backward:
    ``grad_x = A^T @ grad`` with a precomputed transpose, ``grad_w[e] = grad[h_e] . x[t_e]`` as
    one sampled dense-dense product). Repeated (head, tail) pairs (several relations) are summed.

    Args:
        heads, tails: (E,) int64; heads in ``[0, n_entities)``, tails in ``[0, x.shape[0])``.
        weights: (E,) float edge weights (e.g. :func:`segment_softmax` output), may require grad.
        x: (N, d) float entity representations, may require grad.
        n_entities: number of output rows.
        chunk: unused (kept for compatibility; no per-edge (E, d) temporary is built).
        pattern: the precomputed ``SparsePattern.build(heads, tails, (n_entities, N))``
            (``KGStructure.adjacency``); without it the pattern is built on every call.

    Returns:
        (n_entities, d), dtype of ``x``.
    """
    weights = weights.reshape(-1)
    if pattern is None:
        heads = heads.reshape(-1).long()
        tails = tails.reshape(-1).long()
        if not (heads.numel() == tails.numel() == weights.numel()):
            lengths = (heads.numel(), tails.numel(), weights.numel())
            raise ValueError(f"heads/tails/weights differ in length: {lengths}")
        _check_edges(heads, tails, n_entities, x.shape[0])
        pattern = SparsePattern.build(heads, tails, (n_entities, x.shape[0]))
    elif pattern.n_items != weights.numel() or pattern.shape != (n_entities, x.shape[0]):
        raise ValueError(f"pattern {pattern.shape} over {pattern.n_items} edges does not fit "
                         f"{weights.numel()} weights, {n_entities} rows and x {tuple(x.shape)}")
    if weights.dtype != x.dtype:
        weights = weights.to(x.dtype)
    return _KGPropagate.apply(weights, x, pattern)

"""Precomputed KG patterns (``SparsePattern``, ``kg_structure``) and the CSR ``kg_propagate``
path, against the COO / per-edge reference they replace."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from slifmr.graphs.kg import KGEdges, SegmentPlan, SparsePattern, kg_propagate, kg_structure


def random_edges(g: torch.Generator, n_rows: int, n_cols: int, e: int):
    return torch.randint(0, n_rows, (e,), generator=g), torch.randint(0, n_cols, (e,), generator=g)


def reference_propagate(heads, tails, w, x, n):
    """The previous implementation's maths: ``out[h] += w_e x[t_e]`` (gradients by autograd)."""
    return torch.zeros(n, x.shape[1], dtype=x.dtype).index_add(0, heads, x[tails] * w[:, None])


def coo_propagate(heads, tails, w, x, n):
    """The previous forward: a COO built from the edge list on every call."""
    a = torch.sparse_coo_tensor(torch.stack([heads, tails]), w, (n, x.shape[0]), check_invariants=False)
    return torch.sparse.mm(a, x)


def test_sparse_pattern_matches_dense_with_repeats():
    g = torch.Generator().manual_seed(0)
    n_rows, n_cols, e, d = 7, 11, 40, 3
    rows, cols = random_edges(g, n_rows, n_cols, e)  # 40 items on 77 cells: repeats are certain
    p = SparsePattern.build(rows, cols, (n_rows, n_cols))
    assert p.nnz == torch.unique(rows * n_cols + cols).numel() < e and p.perm is None
    w = torch.randn(e, generator=g, dtype=torch.float64)
    dense = torch.zeros(n_rows, n_cols, dtype=torch.float64).index_put_((rows, cols), w, accumulate=True)
    v = p.entry_values(w)
    x = torch.randn(n_cols, d, generator=g, dtype=torch.float64)
    y = torch.randn(n_rows, d, generator=g, dtype=torch.float64)
    torch.testing.assert_close(p.mm(v, x), dense @ x)
    torch.testing.assert_close(p.t_mm(v, y), dense.T @ y)
    acc = torch.randn(n_cols, d, generator=g, dtype=torch.float64)
    want = acc + dense.T @ y
    assert p.t_mm(v, y, accumulate=acc) is acc  # added in place
    torch.testing.assert_close(acc, want)
    # a row block with its columns shifted: rows 2..5, columns 1.. (none of its entries is left of 1)
    blk_rows = (rows >= 2) & (rows < 5)
    c0 = int(cols[blk_rows].min())
    b = p.row_block(2, 5, c0, n_cols)
    assert b.shape == (3, n_cols - c0) and b.inv is None
    first = int(p.crow[2])
    torch.testing.assert_close(b.mm(v[first : first + b.nnz], x[c0:]), (dense @ x)[2:5])
    # sampled product, per item
    torch.testing.assert_close(p.item_values(p.sddmm(y, x)), (y[rows] * x[cols]).sum(-1))


def test_sparse_pattern_identity_and_permutation():
    rows, cols = torch.tensor([0, 0, 2, 2]), torch.tensor([1, 3, 0, 2])
    p = SparsePattern.build(rows, cols, (3, 4))
    assert p.inv is None and p.perm is None  # sorted, distinct: values are used as they come
    assert p.crow.tolist() == [0, 2, 2, 4] and p.col.tolist() == [1, 3, 0, 2]
    q = SparsePattern.build(rows.flip(0), cols.flip(0), (3, 4))
    w = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert q.entry_values(w).tolist() == [4.0, 3.0, 2.0, 1.0]
    assert q.item_values(q.entry_values(w)).tolist() == w.tolist()
    e = SparsePattern.build(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), (3, 4))
    assert e.nnz == 0 and e.mm(torch.zeros(0), torch.ones(4, 2)).abs().sum() == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kg_propagate_csr_equals_previous_reference(seed):
    g = torch.Generator().manual_seed(seed)
    n_out, n, e, d = 23, 31, 300, 6
    heads, tails = random_edges(g, n_out, n, e)
    heads[:20], tails[:20] = heads[20:40], tails[20:40]  # repeated (head, tail) pairs
    w = torch.rand(e, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(n_out, d, generator=g, dtype=torch.float64)
    pattern = SparsePattern.build(heads, tails, (n_out, n))
    results = []
    for fn in (lambda: kg_propagate(heads, tails, w, x, n_out, pattern=pattern),
               lambda: kg_propagate(heads, tails, w, x, n_out),
               lambda: reference_propagate(heads, tails, w, x, n_out)):
        w.grad = x.grad = None
        out = fn()
        out.backward(grad)
        results.append((out.detach(), w.grad.clone(), x.grad.clone()))
    torch.testing.assert_close(results[0][0], coo_propagate(heads, tails, w.detach(), x.detach(), n_out))
    for r in results[1:]:
        for a, b in zip(results[0], r):
            torch.testing.assert_close(a, b)


def test_kg_propagate_pattern_gradcheck_and_mismatch():
    g = torch.Generator().manual_seed(7)
    heads, tails = random_edges(g, 5, 4, 12)
    pattern = SparsePattern.build(heads, tails, (5, 4))
    w = torch.rand(12, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    fn = lambda w_, x_: kg_propagate(heads, tails, w_, x_, 5, pattern=pattern)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (w, x))
    with pytest.raises(ValueError):
        kg_propagate(heads[:-1], tails[:-1], w[:-1], x, 5, pattern=pattern)


@pytest.mark.parametrize("tile,chunk_rows", [(256, None), (2, 1), (3, 7)])
def test_kg_structure_pairs_and_validation(tile, chunk_rows):
    g = torch.Generator().manual_seed(8)
    n, e = 15, 60
    heads, tails = random_edges(g, n, n, e)
    heads[:25] %= 4  # relation 0: fewer distinct heads than tails (W_r folds into the head side)
    tails[25:] %= 4  # relation 2: fewer distinct tails than heads (its tails are projected)
    ptr = torch.tensor([0, 25, 25, 60])  # relation 1 is empty
    rel = torch.tensor([0] * 25 + [2] * 35)
    st = kg_structure(heads, tails, ptr, n, chunk_rows=chunk_rows, tile=tile)
    assert st.n_edges == e and st.n_relations == 3
    pr = st.pairs
    # the distinct (relation, head) / (relation, tail) pairs, sorted
    hp = sorted(set(zip(rel.tolist(), heads.tolist())))
    tp = sorted(set(zip(rel.tolist(), tails.tolist())))
    assert pr.head_node.tolist() == [h for _, h in hp] and pr.tail_node.tolist() == [t for _, t in tp]
    # each head pair has a slot holding its head, in a tile of its relation
    for k, (r, h) in enumerate(hp):
        s = int(pr.slot[k])
        assert int(pr.gather[s]) == h and int(pr.tile_rel[s // pr.tile]) == r
    assert len(set(pr.slot.tolist())) == len(hp)
    # relation 0 folds W_r into the head side (scores with x_t: right row n_proj + t), relation 2
    # projects its tails (right row: its tail pair among the projected ones)
    proj = [k for k in tp if k[0] == 2]
    assert pr.fold and pr.plan_tail.n_rows == len(proj)
    right = [len(proj) + t if r == 0 else proj.index((r, t)) for r, t in zip(rel.tolist(), tails.tolist())]
    # the pattern holds each edge at (its head pair's slot, its right row), repeats summed
    rows = torch.tensor([int(pr.slot[hp.index(k)]) for k in zip(rel.tolist(), heads.tolist())])
    p = pr.pattern
    assert p.shape == (pr.gather.numel(), len(proj) + n)
    dense = torch.zeros(p.shape).index_put_((rows, torch.tensor(right)), torch.ones(e), accumulate=True)
    torch.testing.assert_close(p.mm(p.entry_values(torch.ones(e)), torch.eye(p.shape[1])), dense)
    # the chunks cover the tiles in order, projecting tiles first, each chunk one kind, its entries
    # the pattern's rows of its tiles
    t_end = 0
    for c in pr.chunks:
        assert c.t0 == t_end and c.t1 > c.t0
        t_end = c.t1
        fold = [int(r) == 0 for r in pr.tile_rel[c.t0 : c.t1]]
        assert fold == [False] * c.n_plain + [True] * (c.t1 - c.t0 - c.n_plain)
        block = dense[c.t0 * pr.tile : c.t1 * pr.tile]
        assert c.e1 - c.e0 == int((block > 0).sum()) and not block[:, : c.c0].any() and not block[:, c.c1 :].any()
        torch.testing.assert_close(c.pattern.mm(p.entry_values(torch.ones(e))[c.e0 : c.e1], torch.eye(c.c1 - c.c0)),
                                   block[:, c.c0 : c.c1])
    assert t_end == pr.tile_rel.numel()
    if chunk_rows == 1:
        assert len(pr.chunks) == pr.tile_rel.numel() > 2
    with pytest.raises(ValueError):
        kg_structure(heads, tails, torch.tensor([0, 30, 20, 60]), n)
    with pytest.raises(ValueError):
        kg_structure(heads, tails, ptr, n - 5)


@pytest.mark.parametrize("tile", [1, 3, 256])
def test_segment_plan_matmul_equals_per_row_products(tile):
    """All relations' products in one tiled bmm equal W_r x_i row by row, values and gradients,
    with an empty relation and relations spanning several tiles."""
    g = torch.Generator().manual_seed(tile)
    n_rel, n, d, k = 4, 12, 5, 3
    rel = torch.sort(torch.tensor([0] * 7 + [2] * 4 + [3] * 1)).values  # relation 1 empty
    src = torch.randint(0, n, (rel.numel(),), generator=g)
    x = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(n_rel, k, d, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(n_rel, k, generator=g, dtype=torch.float64, requires_grad=True)
    plan = SegmentPlan.build(src, rel, n_rel, tile)
    got = plan.matmul(x, w, transpose=False, bias=b)
    ref = torch.stack([w[r] @ x[i] + b[r] for i, r in zip(src.tolist(), rel.tolist())])
    torch.testing.assert_close(got, ref)
    y = torch.randn(rel.numel(), k, generator=g, dtype=torch.float64, requires_grad=True)
    got_t = plan.matmul(y, w, transpose=True)  # rows index y by position: src picks y's rows
    ref_t = torch.stack([w[r].T @ y[i] for i, r in zip(src.tolist(), rel.tolist())])
    torch.testing.assert_close(got_t, ref_t)
    gout = torch.randn_like(ref, dtype=torch.float64)
    grads = [torch.autograd.grad((o * gout).sum(), (x, w, b)) for o in (got, ref)]
    for a, c in zip(*grads):
        torch.testing.assert_close(a, c)
    assert torch.autograd.gradcheck(lambda x_, w_: plan.matmul(x_, w_, transpose=False), (x, w))


def test_kg_edges_is_a_named_tuple_and_survives_copies():
    heads, tails = torch.tensor([0, 1, 1]), torch.tensor([2, 0, 2])
    ptr = torch.tensor([0, 1, 3])
    kg = KGEdges(heads, tails, ptr, kg_structure(heads, tails, ptr, 3))
    h, t, p, s = kg
    assert h is heads and t is tails and p is ptr and s is kg.structure and len(kg) == 4
    assert kg.heads is heads and kg.tails is tails and kg.ptr is ptr
    for other in (copy.deepcopy(kg), pickle.loads(pickle.dumps(kg))):
        assert all(torch.equal(a, b) for a, b in zip(other[:3], kg[:3]))
        assert other.structure.n_edges == 3 and other.structure.pairs.n_head_pairs == 2

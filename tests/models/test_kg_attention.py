"""KG attention scores on distinct (head, relation) pairs equal the per-edge Eq. 11 computation."""

from __future__ import annotations

import pytest
import torch

from slifmr.graphs.kg import kg_propagate, kg_structure, segment_softmax
from slifmr.models.encoders.kg_attention import KGAttentionEncoder, relation_scores


def per_edge_scores(x, rel_w, rel_emb, heads, tails, ptr):
    """The previous computation: (W_r x_t) . tanh(W_r x_h + e_r), edge by edge within each relation."""
    parts = []
    for r, (a, b) in enumerate(zip(ptr[:-1].tolist(), ptr[1:].tolist())):
        xt = x[tails[a:b]] @ rel_w[r].T
        xh = torch.tanh(x[heads[a:b]] @ rel_w[r].T + rel_emb[r])
        parts.append((xt * xh).sum(-1))
    return torch.cat(parts)


def random_kg(seed, n=40, n_rel=5, e=400, sort=False, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    rel = torch.randint(0, n_rel, (e,), generator=g)
    rel[rel == 2] = 3  # relation 2 is empty
    heads = torch.randint(0, n, (e,), generator=g) % (n // 2)  # few distinct heads: shared projections
    tails = torch.randint(0, n, (e,), generator=g)
    tails[rel == 1] %= 3  # relation 1: fewer distinct tails than heads (tails are projected)
    k = e // 8  # repeated triples
    heads, tails, rel = (torch.cat([v, v[:k]]) for v in (heads, tails, rel))
    key = (rel * n + heads) * n + tails if sort else rel  # else: any order within a relation
    order = torch.sort(key, stable=True).indices
    heads, tails, rel = heads[order], tails[order], rel[order]
    ptr = torch.zeros(n_rel + 1, dtype=torch.long)
    ptr[1:] = torch.cumsum(torch.bincount(rel, minlength=n_rel), 0)
    x = torch.randn(n, 8, generator=g, dtype=dtype)
    w = torch.randn(n_rel, 8, 8, generator=g, dtype=dtype) * 0.4
    emb = torch.randn(n_rel, 8, generator=g, dtype=dtype)
    return heads, tails, ptr, x, w, emb


def _both_sides(st) -> bool:
    """Some relation projects its tails and some folds W_r into the head side."""
    pr = st.pairs
    return pr.fold and pr.plan_tail.n_rows > 0


@pytest.mark.parametrize("tile,chunk_rows", [(256, None), (3, 1), (4, 10), (5, 15)])
def test_scores_equal_per_edge_reference_values_and_gradients(tile, chunk_rows):
    """The chunked scores (tiny tiles and chunks: several chunks of each kind, relations across
    chunk borders) equal the untiled per-edge computation, values and gradients."""
    for seed, sort in [(0, False), (1, True), (2, False)]:
        heads, tails, ptr, x, w, emb = random_kg(seed, sort=sort)
        st = kg_structure(heads, tails, ptr, x.shape[0], chunk_rows=chunk_rows, tile=tile)
        assert _both_sides(st)
        if chunk_rows is not None:
            kinds = [(c.n_plain > 0, c.n_plain < c.t1 - c.t0) for c in st.pairs.chunks]
            assert len(kinds) > 2 and any(p for p, _ in kinds) and any(f for _, f in kinds)
            assert tile == 3 or any(p and f for p, f in kinds)  # a chunk across the projecting/folding border
        else:  # one chunk holds both kinds of tiles
            (c,) = st.pairs.chunks
            assert 0 < c.n_plain < c.t1 - c.t0
        gout = torch.randn(heads.numel(), generator=torch.Generator().manual_seed(seed))
        got, ref = [], []
        for fn, out in ((lambda a, b, c: relation_scores(a, b, c, st), got),
                        (lambda a, b, c: per_edge_scores(a, b, c, heads, tails, ptr), ref)):
            xs, ws, es = (t.clone().requires_grad_() for t in (x, w, emb))
            s = fn(xs, ws, es)
            s.backward(gout)
            out.extend([s.detach(), xs.grad, ws.grad, es.grad])
        for a, b in zip(got, ref):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        assert got[2][2].abs().sum() == 0  # the empty relation gets no gradient


@pytest.mark.parametrize("chunk_rows", [None, 1])
def test_scores_gradcheck(chunk_rows):
    heads, tails, ptr, x, w, emb = random_kg(3, n=10, n_rel=5, e=40, dtype=torch.float64)
    st = kg_structure(heads, tails, ptr, 10, chunk_rows=chunk_rows, tile=2)
    assert _both_sides(st)
    args = tuple(t.requires_grad_() for t in (x, w, emb))
    assert torch.autograd.gradcheck(lambda a, b, c: relation_scores(a, b, c, st), args)


def test_encoder_equals_per_edge_attention_and_propagation():
    heads, tails, ptr, x, w, emb = random_kg(4)
    n = x.shape[0]
    enc = KGAttentionEncoder(5, 8, n_layers=2)
    with torch.no_grad():
        enc.rel_w.copy_(w)
        enc.rel_emb.copy_(emb)
    gout = torch.randn(n, 8, generator=torch.Generator().manual_seed(9))
    x1 = x.clone().requires_grad_()
    out = enc(x1, heads, tails, ptr, kg_structure(heads, tails, ptr, n))
    out.backward(gout)
    got = [out.detach(), x1.grad, enc.rel_w.grad, enc.rel_emb.grad]
    enc.zero_grad()
    x2 = x.clone().requires_grad_()
    att = segment_softmax(per_edge_scores(x2, enc.rel_w, enc.rel_emb, heads, tails, ptr), heads, n)
    h, acc = x2, x2
    for _ in range(2):
        h = torch.zeros(n, 8).index_add(0, heads, h[tails] * att[:, None])
        acc = acc + h
    ref = acc / 3
    ref.backward(gout)
    for a, b in zip(got, [ref.detach(), x2.grad, enc.rel_w.grad, enc.rel_emb.grad]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # without a structure the encoder builds (and keeps) one for this edge list
    torch.testing.assert_close(enc(x, heads, tails, ptr), got[0])
    assert enc._structure is not None and enc._structure[0] is heads


def test_kg_propagate_with_structure_adjacency():
    heads, tails, ptr, x, _, _ = random_kg(5)
    st = kg_structure(heads, tails, ptr, x.shape[0])
    wt = torch.rand(heads.numel())
    torch.testing.assert_close(kg_propagate(heads, tails, wt, x, x.shape[0], pattern=st.adjacency),
                               kg_propagate(heads, tails, wt, x, x.shape[0]))

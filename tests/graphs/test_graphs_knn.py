"""Cosine kNN (Eq. 2-4): hand cases, missing items, and chunked == dense reference with ties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from slifmr.graphs.knn import knn_adjacency, knn_graph, laplacian_normalize

R2 = 1 / math.sqrt(2)
# cos(0,1)=1/sqrt2, cos(0,2)=0, cos(0,3)=-1, cos(1,2)=1/sqrt2, cos(1,3)=-1/sqrt2, cos(2,3)=0
X4 = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])


def edges(rows, cols, vals):
    return list(zip(rows.tolist(), cols.tolist())), vals


def test_knn_hand_case_k2_with_ties():
    rows, cols, vals = knn_graph(X4, 2)
    got, v = edges(rows, cols, vals)
    assert got == [
        (0, 1), (0, 2),  # 1/sqrt2, 0
        (1, 0), (1, 2),  # tie 1/sqrt2, 1/sqrt2 -> lower column first
        (2, 1), (2, 0),  # 1/sqrt2, then tie 0 (cols 0 and 3) for the last place -> col 0
        (3, 2), (3, 1),  # 0, -1/sqrt2
    ]
    torch.testing.assert_close(v, torch.tensor([R2, 0, R2, R2, R2, 0, 0, -R2]))
    assert (rows != cols).all()


def test_knn_hand_case_k1_and_k_larger_than_n():
    rows, cols, _ = knn_graph(X4, 1)
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 1), (1, 0), (2, 1), (3, 2)]
    rows, cols, vals = knn_graph(X4, 10)  # only n-1 = 3 candidates per row
    assert rows.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert cols.tolist() == [1, 2, 3, 0, 2, 3, 1, 0, 3, 2, 1, 0]
    torch.testing.assert_close(vals[:3], torch.tensor([R2, 0.0, -1.0]))


@pytest.mark.parametrize("how", ["mask", "zero_row"])
def test_knn_missing_item_has_no_edges(how):
    x = X4.clone()
    mask = None
    if how == "mask":
        mask = torch.tensor([True, False, True, True])
    else:
        x[1] = 0.0
    rows, cols, vals = knn_graph(x, 2, mask=mask)
    got = list(zip(rows.tolist(), cols.tolist()))
    assert got == [(0, 2), (0, 3), (2, 0), (2, 3), (3, 2), (3, 0)]
    torch.testing.assert_close(vals, torch.tensor([0.0, -1.0, 0.0, 0.0, 0.0, -1.0]))
    assert torch.isfinite(vals).all()
    adj = knn_adjacency(x, 2, mask=mask, weighted=False)
    d = adj.to_dense()
    assert d[1].sum() == 0 and d[:, 1].sum() == 0


def test_knn_adjacency_weighted_unweighted_symmetric():
    w = knn_adjacency(X4, 2).to_dense()  # cosines clamped at 0, zero edges dropped
    expected = torch.zeros(4, 4)
    expected[0, 1] = expected[1, 0] = expected[1, 2] = expected[2, 1] = R2
    torch.testing.assert_close(w, expected)
    assert knn_adjacency(X4, 2)._nnz() == 4
    u = knn_adjacency(X4, 2, weighted=False).to_dense()
    expected_u = torch.zeros(4, 4)
    for r, c in [(0, 1), (0, 2), (1, 0), (1, 2), (2, 1), (2, 0), (3, 2), (3, 1)]:
        expected_u[r, c] = 1
    torch.testing.assert_close(u, expected_u)
    s = knn_adjacency(X4, 2, weighted=False, symmetric=True).to_dense()
    torch.testing.assert_close(s, torch.maximum(expected_u, expected_u.T))


# a, b, c, d with cos(a,b)=0.8, cos(a,c)=0.6, cos(a,d)=0, cos(b,c)=0.96, cos(b,d)=0.6, cos(c,d)=0.8
XL = torch.tensor([[1.0, 0.0], [4.0, 3.0], [3.0, 4.0], [0.0, 1.0]])


def test_laplacian_normalize_by_hand():
    adj = knn_adjacency(XL, 2)
    # kNN rows: a->{b .8, c .6}, b->{c .96, a .8}, c->{b .96, d .8}, d->{c .8, b .6}
    raw = torch.tensor(
        [[0, 0.8, 0.6, 0], [0.8, 0, 0.96, 0], [0, 0.96, 0, 0.8], [0, 0.6, 0.8, 0]], dtype=torch.float32
    )
    torch.testing.assert_close(adj.to_dense(), raw)
    # row sums: a=1.4, b=1.76, c=1.76, d=1.4; entry (i,j) = v / sqrt(d_i d_j)
    s = math.sqrt(1.4 * 1.76)
    expected = torch.tensor(
        [
            [0, 0.8 / s, 0.6 / s, 0],
            [0.8 / s, 0, 0.96 / 1.76, 0],
            [0, 0.96 / 1.76, 0, 0.8 / s],
            [0, 0.6 / s, 0.8 / s, 0],
        ],
        dtype=torch.float32,
    )
    norm = laplacian_normalize(adj)
    assert norm.is_coalesced()
    torch.testing.assert_close(norm.to_dense(), expected)
    # unweighted (FREEDOM): all row sums 2 -> every edge 1/2
    torch.testing.assert_close(laplacian_normalize(knn_adjacency(XL, 2, weighted=False)).to_dense(), (raw > 0) * 0.5)


def dense_reference(x: np.ndarray, k: int, valid: np.ndarray):
    """Row-by-row numpy reference with the same arithmetic (dot / |x_i| / |x_j|) and tie rule."""
    norms = np.sqrt((x * x).sum(1)).astype(x.dtype)
    sim = (x @ x.T) / np.maximum(norms, 1e-12)[:, None].astype(x.dtype)
    sim = sim / np.maximum(norms, 1e-12)[None, :].astype(x.dtype)
    rows, cols, vals = [], [], []
    for i in range(len(x)):
        if not valid[i]:
            continue
        cand = np.array([j for j in range(len(x)) if j != i and valid[j]], dtype=np.int64)
        if len(cand) == 0:
            continue
        order = np.lexsort((cand, -sim[i, cand]))[:k]  # similarity desc, then column asc
        rows += [i] * len(order)
        cols += cand[order].tolist()
        vals += sim[i, cand[order]].tolist()
    return np.array(rows), np.array(cols), np.array(vals)


@pytest.mark.parametrize("chunk", [1, 7, 64, 300, 1024])
def test_knn_chunked_equals_dense_reference_with_ties(chunk):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, size=(300, 6)).astype(np.float32)  # few distinct values -> many ties
    x[[5, 17]] = 0.0  # zero rows: missing
    mask = np.ones(300, dtype=bool)
    mask[[3, 250]] = False
    valid = mask & (np.abs(x).sum(1) > 0)
    r_ref, c_ref, v_ref = dense_reference(x, 10, valid)
    r, c, v = knn_graph(torch.from_numpy(x), 10, mask=torch.from_numpy(mask), chunk_size=chunk)
    assert np.array_equal(r.numpy(), r_ref)
    assert np.array_equal(c.numpy(), c_ref)
    np.testing.assert_allclose(v.numpy(), v_ref, rtol=1e-6, atol=1e-7)
    assert len(r_ref) == 10 * valid.sum()  # every valid row has >= 10 valid candidates


@pytest.mark.parametrize("chunk", [1, 7, 128])
def test_knn_chunked_equals_dense_reference_continuous(chunk):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 16))
    valid = np.ones(300, dtype=bool)
    r_ref, c_ref, v_ref = dense_reference(x, 5, valid)
    r, c, v = knn_graph(torch.from_numpy(x), 5, chunk_size=chunk)
    assert v.dtype == torch.float64
    assert np.array_equal(r.numpy(), r_ref) and np.array_equal(c.numpy(), c_ref)
    np.testing.assert_allclose(v.numpy(), v_ref, rtol=1e-10, atol=1e-12)


def test_knn_reference_has_boundary_ties():
    """The discrete test data really has ties straddling the k-th place."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, size=(300, 6)).astype(np.float32)
    x[[5, 17]] = 0.0
    xt = torch.from_numpy(x)
    n = xt.norm(dim=1).clamp_min(1e-12)
    sim = xt @ xt.T / n[:, None] / n[None, :]
    sim.fill_diagonal_(-2.0)
    kth = sim.sort(1, descending=True).values[:, 9:11]
    assert (kth[:, 0] == kth[:, 1]).sum() > 50

"""bipartite_adjacency + sym_normalize (Eq. 1, 7, 18) on hand-computed 2-user, 3-item graphs."""

from __future__ import annotations

import math

import torch

from slifmr.graphs.adjacency import bipartite_adjacency, csr_mm, csr_pair, sym_normalize, to_csr

# interactions u0-i0, u0-i1, u1-i1, u1-i2 (u0-i0 repeated: R is binary)
USERS = torch.tensor([0, 0, 1, 1, 0])
ITEMS = torch.tensor([0, 1, 1, 2, 0])
R2 = 1 / math.sqrt(2)

# node order: u0, u1, i0, i1, i2
A_EXPECTED = torch.tensor(
    [
        [0, 0, 1, 1, 0],
        [0, 0, 0, 1, 1],
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 1, 0, 0, 0],
    ],
    dtype=torch.float32,
)
# degrees u0=2, u1=2, i0=1, i1=2, i2=1; entry = 1 / sqrt(d_m d_n)
A_NORM_EXPECTED = torch.tensor(
    [
        [0, 0, R2, 0.5, 0],
        [0, 0, 0, 0.5, R2],
        [R2, 0, 0, 0, 0],
        [0.5, 0.5, 0, 0, 0],
        [0, R2, 0, 0, 0],
    ],
    dtype=torch.float32,
)


def test_bipartite_adjacency_by_hand():
    a = bipartite_adjacency(USERS, ITEMS, 2, 3)
    assert a.layout == torch.sparse_coo and a.is_coalesced()
    assert a.shape == (5, 5)
    assert a._nnz() == 8
    torch.testing.assert_close(a.to_dense(), A_EXPECTED)


def test_sym_normalize_by_hand():
    an = sym_normalize(bipartite_adjacency(USERS, ITEMS, 2, 3))
    assert an.is_coalesced()
    torch.testing.assert_close(an.to_dense(), A_NORM_EXPECTED)


def test_item_item_block_and_its_normalisation():
    # G: i0 -> i1 with 0.3, i2 -> i0 with 0.5 (directed, own values)
    g = torch.sparse_coo_tensor(torch.tensor([[0, 2], [1, 0]]), torch.tensor([0.3, 0.5]), (3, 3), check_invariants=True).coalesce()
    a = bipartite_adjacency(USERS, ITEMS, 2, 3, item_item=g)
    expected = A_EXPECTED.clone()
    expected[2, 3] = 0.3
    expected[4, 2] = 0.5
    torch.testing.assert_close(a.to_dense(), expected)
    # row sums: u0=2, u1=2, i0=1.3, i1=2, i2=1.5
    expected_norm = torch.tensor(
        [
            [0, 0, 1 / math.sqrt(2 * 1.3), 1 / math.sqrt(4), 0],
            [0, 0, 0, 1 / math.sqrt(4), 1 / math.sqrt(2 * 1.5)],
            [1 / math.sqrt(1.3 * 2), 0, 0, 0.3 / math.sqrt(1.3 * 2), 0],
            [1 / math.sqrt(4), 1 / math.sqrt(4), 0, 0, 0],
            [0, 1 / math.sqrt(1.5 * 2), 0.5 / math.sqrt(1.5 * 1.3), 0, 0],
        ],
        dtype=torch.float32,
    )
    torch.testing.assert_close(sym_normalize(a).to_dense(), expected_norm)


def test_sym_normalize_isolated_node_no_nan():
    # a third user without interactions: its row and column stay empty / zero
    a = bipartite_adjacency(USERS, ITEMS, 3, 3)
    an = sym_normalize(a).to_dense()
    assert torch.isfinite(an).all()
    assert an[2].abs().sum() == 0 and an[:, 2].abs().sum() == 0
    # explicit zero row in the values: stays 0, no NaN
    z = torch.sparse_coo_tensor(torch.tensor([[0, 1], [1, 0]]), torch.tensor([0.0, 2.0]), (2, 2), check_invariants=True)
    zn = sym_normalize(z).to_dense()
    assert torch.isfinite(zn).all()
    torch.testing.assert_close(zn, torch.zeros(2, 2))


def test_bipartite_adjacency_rejects_out_of_range():
    import pytest

    with pytest.raises(ValueError):
        bipartite_adjacency(torch.tensor([0, 2]), torch.tensor([0, 1]), 2, 3)
    with pytest.raises(ValueError):
        bipartite_adjacency(torch.tensor([0, 1]), torch.tensor([0, 3]), 2, 3)


def test_csr_mm_matches_coo_forward_and_backward():
    torch.manual_seed(0)
    n, e = 50, 300
    idx = torch.randint(0, n, (2, e))
    a = torch.sparse_coo_tensor(idx, torch.rand(e), (n, n), check_invariants=True).coalesce()  # not symmetric
    x = torch.randn(n, 4, requires_grad=True)
    g = torch.randn(n, 4)
    torch.sparse.mm(a, x).backward(g)
    ref_grad = x.grad.clone()
    x.grad = None
    c, ct = csr_pair(a)
    y = csr_mm(c, ct, x)
    y.backward(g)
    torch.testing.assert_close(y, a.to_dense() @ x)
    torch.testing.assert_close(x.grad, ref_grad)
    torch.testing.assert_close(to_csr(a).to_dense(), a.to_dense())

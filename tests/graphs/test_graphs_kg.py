"""KG helpers (Eq. 10-12): inverse relations, segment softmax, sparse propagation + gradients."""

from __future__ import annotations

import pytest
import torch

from slifmr.graphs.kg import add_inverse, kg_propagate, segment_softmax


def test_add_inverse_by_hand():
    t = torch.tensor([[0, 0, 5], [1, 2, 6]])
    out = add_inverse(t, 3)
    assert out.tolist() == [[0, 0, 5], [1, 2, 6], [5, 3, 0], [6, 5, 1]]


def loop_softmax(scores: torch.Tensor, seg: torch.Tensor, n: int) -> torch.Tensor:
    out = torch.empty_like(scores)
    for s in range(n):
        idx = (seg == s).nonzero().squeeze(1)
        if idx.numel():
            out[idx] = torch.softmax(scores[idx], dim=0)
    return out


def test_segment_softmax_matches_loop_and_sums_to_one():
    g = torch.Generator().manual_seed(0)
    seg = torch.randint(0, 10, (60,), generator=g)  # segments 10, 11 are empty
    scores = torch.randn(60, generator=g) * 5
    out = segment_softmax(scores, seg, 12)
    torch.testing.assert_close(out, loop_softmax(scores, seg, 12))
    sums = torch.zeros(12).index_add(0, seg, out)
    nonempty = torch.bincount(seg, minlength=12) > 0
    torch.testing.assert_close(sums[nonempty], torch.ones(int(nonempty.sum())))
    assert (sums[~nonempty] == 0).all()


def test_segment_softmax_by_hand_and_stable():
    scores = torch.tensor([0.0, 0.0, 1000.0, 1001.0, -3.0])
    seg = torch.tensor([0, 0, 1, 1, 2])
    e = torch.exp(torch.tensor(-1.0))
    expected = torch.tensor([0.5, 0.5, e / (1 + e), 1 / (1 + e), 1.0])
    out = segment_softmax(scores, seg, 3)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, expected)
    # a segment of only -inf scores gives zeros, not NaN
    out = segment_softmax(torch.tensor([float("-inf"), float("-inf"), 1.0]), torch.tensor([0, 0, 1]), 2)
    assert out.tolist() == [0.0, 0.0, 1.0]


def test_segment_softmax_multihead():
    g = torch.Generator().manual_seed(1)
    seg = torch.randint(0, 4, (20,), generator=g)
    scores = torch.randn(20, 3, generator=g)
    out = segment_softmax(scores, seg, 4)
    for h in range(3):
        torch.testing.assert_close(out[:, h], loop_softmax(scores[:, h], seg, 4))


def test_segment_softmax_gradcheck():
    g = torch.Generator().manual_seed(2)
    seg = torch.tensor([0, 0, 1, 1, 1, 3, 0])
    scores = torch.randn(7, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: segment_softmax(s, seg, 4), (scores,))


def test_kg_propagate_matches_dense_with_repeated_pairs():
    heads = torch.tensor([0, 0, 1, 2, 2, 0])
    tails = torch.tensor([1, 2, 0, 3, 3, 1])  # (0, 1) and (2, 3) appear twice (two relations)
    w = torch.tensor([0.5, 0.25, 1.0, 0.3, 0.7, 2.0])
    x = torch.arange(12, dtype=torch.float32).view(4, 3)
    out = kg_propagate(heads, tails, w, x, 4)
    dense = torch.zeros(4, 4)
    dense.index_put_((heads, tails), w, accumulate=True)
    torch.testing.assert_close(out, dense @ x)
    # by hand, row 0: 2.5 * x[1] + 0.25 * x[2]; row 3 has no out-edges
    torch.testing.assert_close(out[0], 2.5 * x[1] + 0.25 * x[2])
    assert (out[3] == 0).all()


def test_kg_propagate_gradients_flow_and_match_index_add():
    g = torch.Generator().manual_seed(3)
    n, e, d = 30, 200, 5
    heads, tails = torch.randint(0, n, (e,), generator=g), torch.randint(0, n, (e,), generator=g)
    w = torch.rand(e, generator=g, requires_grad=True)
    x = torch.randn(n, d, generator=g, requires_grad=True)
    grad = torch.randn(n, d, generator=g)
    kg_propagate(heads, tails, w, x, n, chunk=7).backward(grad)
    gw, gx = w.grad.clone(), x.grad.clone()
    w.grad = x.grad = None
    torch.zeros(n, d).index_add(0, heads, x[tails] * w[:, None]).backward(grad)
    assert gw.abs().sum() > 0 and gx.abs().sum() > 0
    torch.testing.assert_close(gw, w.grad)
    torch.testing.assert_close(gx, x.grad)


def test_kg_propagate_gradcheck():
    g = torch.Generator().manual_seed(4)
    heads = torch.tensor([0, 0, 1, 2, 2, 4, 0])
    tails = torch.tensor([1, 2, 0, 3, 3, 1, 1])
    w = torch.rand(7, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    # 5 output rows from 4 input rows (heads and tails may live in different ranges)
    assert torch.autograd.gradcheck(lambda w_, x_: kg_propagate(heads, tails, w_, x_, 5, chunk=3), (w, x))


def test_kg_propagate_softmax_chain_gradcheck():
    g = torch.Generator().manual_seed(5)
    heads = torch.tensor([0, 0, 1, 1, 1, 2])
    tails = torch.tensor([1, 2, 0, 2, 2, 0])
    s = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    fn = lambda s_, x_: kg_propagate(heads, tails, segment_softmax(s_, heads, 3), x_, 3)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (s, x))


def test_kg_propagate_rejects_out_of_range():
    with pytest.raises(ValueError):
        kg_propagate(torch.tensor([0, 5]), torch.tensor([0, 1]), torch.ones(2), torch.zeros(3, 2), 3)

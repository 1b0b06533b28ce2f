"""Tests of the view fusion modules (Eq. 14-15 and the Fig. 5 variants)."""

from __future__ import annotations

import pytest
import torch

from slifmr.models.fusion import AILF, AttentionFusion, ConcatFusion, SumFusion, build_fusion

N, D = 6, 8


def _views(v: int = 3, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(N, D, generator=g) for _ in range(v)]


def test_ailf_weights_are_item_level_distribution() -> None:
    torch.manual_seed(0)
    fused, w = AILF(D, 3)(_views())
    assert fused.shape == (N, D) and w is not None and w.shape == (N, 3)
    assert torch.allclose(w.sum(dim=1), torch.ones(N), atol=1e-6)
    assert bool(((w > 0) & (w < 1)).all())
    assert not torch.allclose(w[0], w[1])  # item-level: rows differ


def test_ailf_fused_is_weighted_sum() -> None:
    torch.manual_seed(1)
    views = _views(seed=1)
    fused, w = AILF(D, 3)(views)
    assert w is not None
    by_hand = w[:, 0:1] * views[0] + w[:, 1:2] * views[1] + w[:, 2:3] * views[2]
    assert torch.allclose(fused, by_hand, atol=1e-6)


def test_ailf_zero_params_give_uniform_weights() -> None:
    m = AILF(D, 3)
    with torch.no_grad():
        m.proj.weight.zero_()
        m.proj.bias.zero_()
    views = _views(seed=2)
    fused, w = m(views)
    assert w is not None
    assert torch.allclose(w, torch.full((N, 3), 1 / 3))
    assert torch.allclose(fused, sum(views) / 3, atol=1e-6)


def test_ailf_logits_formula() -> None:
    # alpha = softmax((W [v1|v2|v3] + b) / sqrt(d)) with the module's own W, b.
    torch.manual_seed(3)
    m = AILF(D, 3)
    views = _views(seed=3)
    _, w = m(views)
    cat = torch.cat(views, dim=1)
    expect = torch.softmax((cat @ m.proj.weight.T + m.proj.bias) / D**0.5, dim=1)
    assert w is not None and torch.allclose(w, expect, atol=1e-6)


def test_ailf_gradient_reaches_w() -> None:
    torch.manual_seed(4)
    m = AILF(D, 3)
    fused, _ = m(_views(seed=4))
    (fused**2).sum().backward()
    assert m.proj.weight.grad is not None and m.proj.weight.grad.abs().sum() > 0
    assert m.proj.bias.grad is not None and m.proj.bias.grad.abs().sum() > 0


@pytest.mark.parametrize("v", [1, 2])
def test_fusions_support_fewer_views(v: int) -> None:
    views = _views(v)
    for kind in ("ailf", "concat", "sum", "attention"):
        fused, w = build_fusion(kind, D, v)(views)
        assert fused.shape == (N, D)
        assert w is None or w.shape == (N, v)


def test_attention_weights_shared_across_items() -> None:
    m = AttentionFusion(D, 3)
    with torch.no_grad():
        m.logits.copy_(torch.tensor([0.5, -1.0, 2.0]))
    views = _views(seed=5)
    fused, w = m(views)
    assert w is not None and w.shape == (N, 3)
    assert torch.allclose(w, w[0].expand(N, 3))  # every item has the same weights
    assert torch.allclose(w[0], torch.softmax(torch.tensor([0.5, -1.0, 2.0]), 0))
    by_hand = w[0, 0] * views[0] + w[0, 1] * views[1] + w[0, 2] * views[2]
    assert torch.allclose(fused, by_hand, atol=1e-6)


def test_concat_output_shape_and_linear() -> None:
    m = ConcatFusion(D, 3)
    views = _views(seed=6)
    fused, w = m(views)
    assert fused.shape == (N, D) and w is None
    assert torch.allclose(fused, m.proj(torch.cat(views, dim=1)))


def test_sum_fusion_is_plain_sum() -> None:
    views = _views(seed=7)
    fused, w = SumFusion(D, 3)(views)
    assert w is None
    assert torch.allclose(fused, views[0] + views[1] + views[2])


def test_wrong_number_of_views_raises() -> None:
    with pytest.raises(ValueError):
        AILF(D, 3)(_views(2))


def test_build_fusion_kinds_and_unknown() -> None:
    assert isinstance(build_fusion("ailf", D, 3), AILF)
    assert isinstance(build_fusion("concat", D, 3), ConcatFusion)
    assert isinstance(build_fusion("sum", D, 3), SumFusion)
    assert isinstance(build_fusion("attention", D, 3), AttentionFusion)
    with pytest.raises(ValueError, match="ailf.*concat.*sum.*attention"):
        build_fusion("gated", D, 3)

"""Tests of the SLIF-MR loss terms (Eq. 19-24)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from slifmr.models.losses import bpr_loss, inter_modal_loss, l2_reg, uniformity_loss


def test_bpr_hand_case() -> None:
    # pair 1: pos 1, neg 0 -> -log sigmoid(1) = log(1 + e^-1) = 0.3132617
    # pair 2: pos 0, neg 0 -> -log sigmoid(0) = log 2       = 0.6931472
    # mean = (0.3132617 + 0.6931472) / 2 = 0.5032044
    pos = torch.tensor([1.0, 0.0])
    neg = torch.tensor([0.0, 0.0])
    assert bpr_loss(pos, neg).item() == pytest.approx(0.5032044, abs=1e-6)


def test_bpr_stable_for_large_gaps() -> None:
    # -log sigmoid(-200) = 200 exactly in float32; log(sigmoid) would give inf.
    loss = bpr_loss(torch.tensor([-100.0]), torch.tensor([100.0]))
    assert loss.item() == pytest.approx(200.0)


def _inter_direct(view: torch.Tensor, fused: torch.Tensor, tau: float, exclude: bool) -> float:
    b = view.shape[0]
    total = 0.0
    for i in range(b):
        pos = math.exp(F.cosine_similarity(view[i], fused[i], dim=0).item() / tau)
        den = 0.0
        for j in range(b):
            if exclude and j == i:
                continue
            den += math.exp(F.cosine_similarity(view[i], fused[j], dim=0).item() / tau)
        total += -math.log(pos / den)
    return total / b


@pytest.mark.parametrize("exclude", [True, False])
def test_inter_matches_double_loop(exclude: bool) -> None:
    g = torch.Generator().manual_seed(0)
    view = torch.randn(7, 5, generator=g, dtype=torch.float64)
    fused = torch.randn(7, 5, generator=g, dtype=torch.float64)
    got = inter_modal_loss(view, fused, tau=0.3, exclude_positive=exclude).item()
    assert got == pytest.approx(_inter_direct(view, fused, 0.3, exclude), rel=1e-10)


def test_inter_exclude_flag_changes_value() -> None:
    g = torch.Generator().manual_seed(1)
    view, fused = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    a = inter_modal_loss(view, fused, tau=0.5, exclude_positive=True)
    b = inter_modal_loss(view, fused, tau=0.5, exclude_positive=False)
    assert not torch.isclose(a, b)


def test_inter_hand_case() -> None:
    # view  = [1,0], [0,1];  fused = [1,0], [1,1];  tau = 1
    # sim(v0,f0) = 1, sim(v0,f1) = 1/sqrt2 = 0.7071068, sim(v1,f0) = 0, sim(v1,f1) = 0.7071068
    # exclude_positive: term_i = -log(e^{s_ii} / e^{s_ij}) = s_ij - s_ii
    #   i=0: 0.7071068 - 1 = -0.2928932;  i=1: 0 - 0.7071068 = -0.7071068;  mean = -0.5
    # all j: i=0: log(e^1 + e^0.7071068) - 1 = 0.5573858
    #        i=1: log(e^0 + e^0.7071068) - 0.7071068 = 0.4008335;  mean = 0.4791096
    view = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    fused = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert inter_modal_loss(view, fused, 1.0, True).item() == pytest.approx(-0.5, abs=1e-6)
    assert inter_modal_loss(view, fused, 1.0, False).item() == pytest.approx(0.4791096, abs=1e-6)


def test_inter_stop_gradient_on_fused() -> None:
    g = torch.Generator().manual_seed(2)
    view = torch.randn(6, 4, generator=g, requires_grad=True)
    fused = torch.randn(6, 4, generator=g, requires_grad=True)
    inter_modal_loss(view, fused, tau=0.2).backward()
    assert fused.grad is None or torch.count_nonzero(fused.grad).item() == 0
    assert view.grad is not None and torch.count_nonzero(view.grad).item() > 0


def test_inter_stop_gradient_blocks_upstream_params() -> None:
    # fused computed from a parameter (as the AILF output is): that parameter gets nothing.
    g = torch.Generator().manual_seed(3)
    view = torch.randn(5, 4, generator=g, requires_grad=True)
    w = torch.randn(4, 4, generator=g, requires_grad=True)
    inter_modal_loss(view, view @ w, tau=0.2).backward()
    assert w.grad is None or torch.count_nonzero(w.grad).item() == 0
    assert view.grad is not None and torch.count_nonzero(view.grad).item() > 0


def _uniform_direct(x: torch.Tensor, t: float) -> float:
    z = x / x.norm(dim=1, keepdim=True)
    b = z.shape[0]
    s = sum(math.exp(-t * (z[i] - z[j]).pow(2).sum().item()) for i in range(b) for j in range(b))
    return math.log(s / b**2)


def test_uniformity_matches_direct_formula() -> None:
    x = torch.randn(9, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert uniformity_loss(x, t=2.0).item() == pytest.approx(_uniform_direct(x, 2.0), rel=1e-10)
    assert uniformity_loss(x, t=0.7).item() == pytest.approx(_uniform_direct(x, 0.7), rel=1e-10)


def test_uniformity_hand_case() -> None:
    # two orthogonal unit points: ||.||^2 = 0 on the diagonal, 2 off it; t = 2
    # mean exp = (1 + 1 + e^-4 + e^-4) / 4 -> log((1 + e^-4) / 2) = -0.6749973
    x = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    assert uniformity_loss(x).item() == pytest.approx(-0.6749973, abs=1e-6)


def test_uniformity_scale_invariant() -> None:
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(uniformity_loss(x), uniformity_loss(37.5 * x), atol=1e-6)


def test_uniformity_lower_for_spread_points() -> None:
    g = torch.Generator().manual_seed(6)
    spread = torch.randn(32, 8, generator=g)
    clustered = torch.ones(32, 8) + 0.01 * torch.randn(32, 8, generator=g)
    assert uniformity_loss(spread) < uniformity_loss(clustered) - 1.0


def test_l2_reg_convention() -> None:
    # 0.5 * (1 + 4 + 9 + 16 + 4) / 2 rows = 8.5
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    b = torch.tensor([[2.0], [0.0]])
    assert l2_reg(a, b).item() == pytest.approx(8.5)


def test_consistency_losses_of_stacked_views_equal_one_view_at_a_time():
    """SLIF-MR scores all views in one pass ((V, B, d)); each value is the single view's loss."""
    g = torch.Generator().manual_seed(3)
    views = torch.randn(3, 9, 5, generator=g)
    fused = torch.randn(9, 5, generator=g)
    for exclude in (True, False):
        got = inter_modal_loss(views, fused, 0.3, exclude)
        ref = torch.stack([inter_modal_loss(v, fused, 0.3, exclude) for v in views])
        torch.testing.assert_close(got, ref)
    torch.testing.assert_close(uniformity_loss(views, 2.0), torch.stack([uniformity_loss(v, 2.0) for v in views]))


def _inter_dense(view, fused, tau, exclude):
    """The whole-block InfoNCE, as written before tiling: the reference for the tiled function."""
    v, x = F.normalize(view, dim=-1), F.normalize(fused.detach(), dim=-1)
    logits = v @ x.T / tau
    pos = logits.diagonal(dim1=-2, dim2=-1)
    if exclude:
        logits = logits.masked_fill(torch.eye(logits.shape[-1], dtype=torch.bool), float("-inf"))
    return (torch.logsumexp(logits, dim=-1) - pos).mean(-1)


def _uniform_dense(x, t):
    z = F.normalize(x, dim=-1)
    sq = (2.0 - 2.0 * (z @ z.transpose(-1, -2))).clamp_min(0.0)
    return torch.logsumexp((-t * sq).flatten(-2), dim=-1) - math.log(sq.shape[-1] * sq.shape[-2])


@pytest.mark.parametrize("entries", [1, 7, 40, 1 << 21])  # 1 row per tile, ragged tiles, one tile
def test_tiled_consistency_losses_and_gradients_equal_the_whole_block(monkeypatch, entries):
    """The losses run over row tiles of the (V, B, B) blocks with a hand-written backward; values and
    gradients must equal the whole-block autograd computation for any tiling (float64)."""
    from slifmr.models import losses

    monkeypatch.setitem(losses.TILE_ENTRIES, "cpu", entries)
    g = torch.Generator().manual_seed(5)
    views = torch.randn(3, 11, 4, generator=g, dtype=torch.float64)
    fused = torch.randn(11, 4, generator=g, dtype=torch.float64)
    w = torch.randn(3, generator=g, dtype=torch.float64)  # unequal weights per view reach the backward
    for exclude in (True, False):
        a = views.clone().requires_grad_(True)
        b = views.clone().requires_grad_(True)
        got = inter_modal_loss(a, fused, 0.3, exclude)
        ref = _inter_dense(b, fused, 0.3, exclude)
        torch.testing.assert_close(got, ref)
        (got * w).sum().backward()
        (ref * w).sum().backward()
        torch.testing.assert_close(a.grad, b.grad)
    a = views.clone().requires_grad_(True)
    b = views.clone().requires_grad_(True)
    got, ref = uniformity_loss(a, 1.7), _uniform_dense(b, 1.7)
    torch.testing.assert_close(got, ref)
    (got * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_tiled_losses_pass_gradcheck(monkeypatch):
    from slifmr.models import losses

    monkeypatch.setitem(losses.TILE_ENTRIES, "cpu", 10)
    g = torch.Generator().manual_seed(8)
    v = torch.randn(2, 6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    fused = torch.randn(6, 3, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: inter_modal_loss(x, fused, 0.5, True), (v,))
    assert torch.autograd.gradcheck(lambda x: uniformity_loss(x, 2.0), (v,))


# -- fixed-shape distinct items (the GPU path: no torch.unique, so no host sync) ----------------
def test_distinct_items_hand_case():
    from slifmr.models.losses import distinct_items

    idx = torch.tensor([3, 1, 3, 2, 1])
    items, keep = distinct_items(idx, fixed_shape=True)
    assert items.tolist() == [1, 1, 2, 3, 3]
    assert keep.tolist() == [True, False, True, True, False]
    u, none = distinct_items(idx, fixed_shape=False)
    assert none is None and u.tolist() == [1, 2, 3]
    assert distinct_items(idx)[1] is None  # a CPU tensor takes torch.unique by default
    assert torch.equal(items[keep], u)


@pytest.mark.parametrize("entries", [1 << 21, 13])  # one tile; tiles of a few rows
@pytest.mark.parametrize("exclude", [True, False])
def test_masked_consistency_losses_equal_the_losses_over_unique_items(monkeypatch, entries, exclude):
    """The fixed-shape path (sorted batch + keep mask) gives the value and the gradients of the
    torch.unique path, for the stacked views, with several tiles, for both denominators."""
    from slifmr.models import losses
    from slifmr.models.losses import distinct_items

    monkeypatch.setitem(losses.TILE_ENTRIES, "cpu", entries)
    g = torch.Generator().manual_seed(3)
    n_items, d = 9, 5
    table = torch.randn(3, n_items, d, generator=g, dtype=torch.float64)  # (V, I, d) view tables
    fused = torch.randn(n_items, d, generator=g, dtype=torch.float64)
    pos = torch.tensor([4, 1, 4, 7, 0, 1, 1, 8, 4, 2])  # repeats, and items never drawn

    def run(fixed: bool):
        t = table.clone().requires_grad_(True)
        items, keep = distinct_items(pos, fixed_shape=fixed)
        stacked = t.index_select(1, items)
        inter = inter_modal_loss(stacked, fused[items], 0.3, exclude, keep)
        intra = uniformity_loss(stacked, 2.0, keep)
        (inter.sum() + 0.7 * intra.sum()).backward()
        return inter.detach(), intra.detach(), t.grad

    for a, b in zip(run(False), run(True)):
        torch.testing.assert_close(a, b)


def test_masked_single_view_losses_match_the_direct_formulas():
    """Unstacked (B, d) inputs with a mask: the double-loop InfoNCE and the direct uniformity over
    the kept rows."""
    from slifmr.models.losses import distinct_items

    g = torch.Generator().manual_seed(5)
    view = torch.randn(6, 4, generator=g, dtype=torch.float64)
    fused = torch.randn(6, 4, generator=g, dtype=torch.float64)
    items, keep = distinct_items(torch.tensor([2, 0, 2, 5, 0, 3]), fixed_shape=True)
    kept = items[keep]
    got = inter_modal_loss(view[items], fused[items], 0.4, True, keep).item()
    assert got == pytest.approx(_inter_direct(view[kept], fused[kept], 0.4, True), rel=1e-10)
    got_u = uniformity_loss(view[items], 2.0, keep).item()
    assert got_u == pytest.approx(_uniform_direct(view[kept], 2.0), rel=1e-10)

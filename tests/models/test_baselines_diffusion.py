"""DiffMM, DiffKG and TMFUN (Table II baselines): the Gaussian diffusion pieces against hand-computed
values (schedule, q(x_t | x_0), the SNR-weighted denoising loss on a 2-user toy, the reverse walk,
the time embedding), the graphs rebuilt from generated rows, DiffKG's KG handling and attention
hop against direct formulas, TMFUN's attention-guided fusion and inter-modal contrast by hand, and the missing-input errors. One epoch end to end through Hydra is in
test_baselines_e2e.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from slifmr.data.dataset import RecDataset
from slifmr.data.graph_store import GraphStore
from slifmr.errors import DataError
from slifmr.graphs.generated import RowMatrix, drop_entries, normalized_bipartite_with_self_loops, topk_edges
from slifmr.models import diffkg as diffkg_mod
from slifmr.models import diffmm as diffmm_mod
from slifmr.models.diffkg import DiffKG, dedup_kg, rgat_layer, sample_per_head, kg_view
from slifmr.models.diffmm import DiffMM, lightgcn_sum
from slifmr.models.tmfun import TMFUN, attention_fusion, inter_modal_infonce
from slifmr.models.encoders.diffusion import (DiffusionSchedule, diffusion_betas, diffusion_loss, p_sample,
                                              timestep_embedding)

# steps 3, scale 1, min 0.1, max 0.3: 1 - alpha_bar = 0.1, 0.2, 0.3 before beta_0 is fixed to 1e-4
B0, B1, B2 = 1e-4, 1 - 0.8 / 0.9, 1 - 0.7 / 0.8
AB = [1 - B0, (1 - B0) * (1 - B1), (1 - B0) * (1 - B1) * (1 - B2)]


def schedule3() -> DiffusionSchedule:
    return DiffusionSchedule(3, 1.0, 0.1, 0.3)


class Fixed(nn.Module):
    """A stand-in denoiser: x̂_0 = scale * x + shift, recording its inputs."""

    def __init__(self, scale: float = 0.0, shift: float = 0.5):
        super().__init__()
        self.scale, self.shift, self.calls = scale, shift, []

    def forward(self, x, t, dropout=True):
        self.calls.append((x.clone(), t.clone()))
        return self.scale * x + self.shift


# -- diffusion ----------------------------------------------------------------------------------
def test_betas_follow_the_linear_alpha_bar_schedule():
    betas = diffusion_betas(3, 1.0, 0.1, 0.3)
    torch.testing.assert_close(betas, torch.tensor([B0, B1, B2], dtype=torch.float64))
    s = schedule3()
    torch.testing.assert_close(s.alpha_bar, torch.tensor(AB))
    with pytest.raises(ValueError):
        diffusion_betas(3, 0.0, 0.1, 0.3)


def test_q_sample_and_snr_weight_by_hand():
    s = schedule3()
    x0 = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    noise = torch.tensor([[0.5, -1.0, 2.0], [1.0, 0.0, -0.5]])
    t = torch.tensor([0, 2])
    xt = s.q_sample(x0, t, noise)
    want = torch.stack([math.sqrt(AB[0]) * x0[0] + math.sqrt(1 - AB[0]) * noise[0],
                        math.sqrt(AB[2]) * x0[1] + math.sqrt(1 - AB[2]) * noise[1]])
    torch.testing.assert_close(xt, want)
    snr = [a / (1 - a) for a in AB]
    torch.testing.assert_close(s.loss_weight(torch.tensor([0, 1, 2])),
                               torch.tensor([1.0, snr[0] - snr[1], snr[1] - snr[2]]))


def test_denoising_loss_on_a_two_user_toy():
    """x̂_0 = 0.5 everywhere, binary rows: each row's MSE is 0.25, weighted by its draw's SNR gap."""
    s = schedule3()
    x0 = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]])
    den = Fixed(scale=0.0, shift=0.5)
    torch.manual_seed(5)
    weighted, x0_hat = diffusion_loss(den, s, x0)
    xt, t = den.calls[0]
    torch.testing.assert_close(weighted, 0.25 * s.loss_weight(t))
    torch.testing.assert_close(x0_hat, torch.full_like(x0, 0.5))
    torch.manual_seed(5)  # replay the draws: x_t is q(x_t | x_0) at the drawn t
    t_again = torch.randint(0, 3, (2,))
    noise = torch.randn_like(x0)
    torch.testing.assert_close(t, t_again)
    torch.testing.assert_close(xt, s.q_sample(x0, t, noise))


def test_reverse_walk_is_the_posterior_mean_and_ends_at_the_prediction():
    """Two steps from x_0 with x̂_0 = 2x: t=1 gives c1 2x_0 + c2 x_0; the t=0 step returns x̂_0
    of that (its coefficients are exactly 1 and 0)."""
    s = DiffusionSchedule(2, 1.0, 0.1, 0.2)
    b0, b1 = 1e-4, 1 - 0.8 / 0.9
    ab0, ab1 = 1 - b0, (1 - b0) * (1 - b1)
    c1 = b1 * math.sqrt(ab0) / (1 - ab1)
    c2 = (1 - ab0) * math.sqrt(1 - b1) / (1 - ab1)
    x0 = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    den = Fixed(scale=2.0, shift=0.0)
    out = p_sample(den, s, x0, sampling_steps=0)
    mid = c1 * 2 * x0 + c2 * x0
    torch.testing.assert_close(out, 2 * mid)
    assert [int(t[0]) for _, t in den.calls] == [1, 0]


def test_time_embedding_by_hand():
    emb = timestep_embedding(torch.tensor([0, 1]), 4)  # freqs 1 and 10000^(-1/2) = 0.01
    want = torch.tensor([[1.0, 1.0, 0.0, 0.0], [math.cos(1), math.cos(0.01), math.sin(1), math.sin(0.01)]])
    torch.testing.assert_close(emb, want)


# -- graphs from generated rows --------------------------------------------------------------------
def test_rows_topk_and_the_rebuilt_bipartite_graph():
    rows = RowMatrix(torch.tensor([0, 0, 1, 0]), torch.tensor([2, 0, 1, 2]), 2, 3)
    torch.testing.assert_close(rows.dense(torch.tensor([1, 0])), torch.tensor([[0.0, 1, 0], [1, 0, 1]]))
    assert rows.contains(torch.tensor([0, 0, 1]), torch.tensor([2, 1, 1])).tolist() == [True, False, True]
    scores = torch.tensor([[0.1, 0.9, 0.5], [0.7, 0.2, 0.3]])
    u, i = topk_edges(lambda r: scores[r], 2, 2, chunk=1, device="cpu")
    assert list(zip(u.tolist(), i.tolist())) == [(0, 1), (0, 2), (1, 0), (1, 2)]
    adj = normalized_bipartite_with_self_loops(u, i, 2, 3).to_dense()
    a = torch.eye(5)
    for uu, ii in zip(u.tolist(), i.tolist()):
        a[uu, 2 + ii] = a[2 + ii, uu] = 1.0
    d = a.sum(1).rsqrt()
    torch.testing.assert_close(adj, d[:, None] * a * d[None, :])


def test_entry_dropout_keeps_a_fraction_and_rescales():
    torch.manual_seed(0)
    n = 400
    idx = torch.stack([torch.arange(n), torch.arange(n)])
    adj = torch.sparse_coo_tensor(idx, torch.full((n,), 0.3), (n, n), check_invariants=False).coalesce()
    out = drop_entries(adj, 0.5).coalesce()
    assert 150 < out.values().numel() < 250
    torch.testing.assert_close(out.values(), torch.full_like(out.values(), 0.6))
    assert drop_entries(adj, 1.0) is adj


# -- DiffKG ----------------------------------------------------------------------------------------
# 2 users, 2 items (entities 0-1), entities 2-3, 2 relations
TRAIN = [[0, 0], [0, 1], [1, 1]]
KG = [[0, 0, 2], [1, 0, 2], [1, 1, 3], [0, 1, 3]]
META = {"n_users": 2, "n_items": 2, "n_entities": 4, "n_relations": 2, "features": {}, "n_kg_relations": 5}


def kg_store() -> GraphStore:
    empty = np.zeros((0, 2), dtype=np.int64)
    ds = RecDataset(name="hand", n_users=2, n_items=2, train=np.array(TRAIN), valid=empty, test=empty,
                    user_ids=np.arange(2).astype(str), item_ids=np.arange(2).astype(str),
                    kg=np.array(KG), n_entities=4, n_relations=2)
    return GraphStore(ds, seed=0)


def test_dedup_keeps_the_smallest_relation_and_sampling_caps_each_head():
    h, t, r = dedup_kg(torch.tensor([1, 0, 1, 0]), torch.tensor([2, 3, 2, 3]), torch.tensor([3, 0, 1, 2]), 4)
    assert list(zip(h.tolist(), t.tolist(), r.tolist())) == [(0, 3, 0), (1, 2, 1)]
    heads = torch.tensor([0, 0, 0, 1, 2, 2])
    keep = sample_per_head(heads, 3, 2, torch.Generator().manual_seed(0))
    assert torch.bincount(heads[keep], minlength=3).tolist() == [2, 1, 2]
    assert sample_per_head(heads, 3, -1).all()


def test_rgat_hop_matches_the_formula():
    torch.manual_seed(0)
    x, rel, w = torch.randn(4, 3), torch.randn(2, 3), torch.randn(6, 3)
    h, t, r = torch.tensor([0, 0, 1, 3]), torch.tensor([2, 3, 2, 0]), torch.tensor([0, 1, 1, 0])
    out = rgat_layer(x, rel, w, kg_view(h, t, r, 4))
    want = x.clone()
    for head in range(4):
        edges = [e for e in range(4) if int(h[e]) == head]
        if not edges:
            continue
        s = torch.stack([torch.nn.functional.leaky_relu((torch.cat([x[head], x[t[e]]]) @ w) @ rel[r[e]], 0.2)
                         for e in edges])
        a = torch.softmax(s, 0)
        want[head] = want[head] + sum(a[j] * x[t[e]] for j, e in enumerate(edges))
    torch.testing.assert_close(out, want)


def test_denoised_kg_keeps_top_rows_that_are_kg_edges_with_their_relation(monkeypatch):
    store = kg_store()
    model = DiffKG(META, embedding_dim=4, denoiser_dims=[8], rebuild_k=1, triplet_num=-1)
    model.attach(store)
    # item 0's top entity is 3 (a KG edge, relation 1); item 1's is 0 (no KG edge 1-0)
    scores = torch.tensor([[0.0, 0.1, 0.2, 0.9], [0.8, 0.0, 0.3, 0.1]])
    monkeypatch.setattr(diffkg_mod, "p_sample", lambda den, sched, x0, steps: scores)
    model.regenerate()
    kg = model.denoised_kg()
    got = sorted(zip(kg["heads"].tolist(), kg["tails"].tolist(), kg["rels"].tolist()))
    # (0, 3) with relation 1 and its reverse (3, 0) with the inverse relation 1 + 2
    assert got == [(0, 3, 1), (3, 0, 3)]


def test_diffkg_loss_terms_and_gradients():
    store = kg_store()
    torch.manual_seed(0)
    model = DiffKG(META, embedding_dim=4, denoiser_dims=[8], triplet_num=-1)
    model.attach(store)
    batch = {"users": torch.tensor([0, 1]), "pos": torch.tensor([0, 1]), "neg": torch.tensor([1, 0])}
    out = model.loss(batch)
    torch.testing.assert_close(out["loss"], out["bpr"] + 1e-7 * out["reg"] + 0.1 * out["cl"] + out["diffusion"])
    out["loss"].backward()
    assert model.denoiser.in_layers[0].weight.grad.abs().sum() > 0
    assert model.entity_emb.grad.abs().sum() > 0


# -- DiffMM ----------------------------------------------------------------------------------------
def mm_store() -> GraphStore:
    empty = np.zeros((0, 2), dtype=np.int64)
    g = torch.Generator().manual_seed(0)
    feats = {"text": torch.randn(3, 5, generator=g).numpy(), "genre": torch.randn(3, 2, generator=g).numpy()}
    ds = RecDataset(name="hand", n_users=2, n_items=3, train=np.array([[0, 0], [0, 1], [1, 2]]), valid=empty,
                    test=empty, user_ids=np.arange(2).astype(str), item_ids=np.arange(3).astype(str),
                    features=feats, feature_masks={k: np.ones(3, dtype=bool) for k in feats})
    return GraphStore(ds, seed=0)


MM_META = {"n_users": 2, "n_items": 3, "n_entities": 0, "n_relations": 0, "features": {"text": 5, "genre": 2},
           "n_kg_relations": 1}


def test_diffmm_forward_matches_the_release_formula_and_the_graphs_are_top_k():
    store = mm_store()
    torch.manual_seed(0)
    model = DiffMM(MM_META, embedding_dim=4, denoiser_dims=[8], rebuild_k=2, keep_rate=1.0)
    model.attach(store)
    model.eval()
    model.regenerate()
    for g in model.modal_graphs().values():  # 2 users x 2 items + 5 self-loops, both directions
        assert g.a._nnz() == 2 * 2 * 2 + 5
    adj = normalized_bipartite_with_self_loops(store.train_users, store.train_items, 2, 3).to_dense()
    u, i = model.user_emb.weight, model.item_emb.weight
    feats = model.modal_features()
    w = torch.softmax(model.modal_weight, 0)
    modal = 0
    for j, m in enumerate(model.modalities):
        gm = model.modal_graphs()[m] @ torch.eye(5)
        f = torch.nn.functional.normalize(torch.nn.functional.leaky_relu(
            store.features[m].float() @ model.trans[m], 0.2), dim=1)
        torch.testing.assert_close(feats[m], torch.nn.functional.leaky_relu(store.features[m].float() @ model.trans[m], 0.2))
        e = adj @ torch.cat([u, f])
        e = e + adj @ torch.cat([e[:2], i])
        e = e + 0.2 * gm @ torch.cat([u, i])
        modal = modal + w[j] * e
    out = modal + adj @ modal + 0.5 * torch.nn.functional.normalize(modal, dim=1)
    got_u, got_i = model.forward()
    torch.testing.assert_close(torch.cat([got_u, got_i]), out)
    torch.testing.assert_close(lightgcn_sum(adj, modal, 1), modal + adj @ modal)


def test_diffmm_loss_terms_and_the_diffusion_guidance_term(monkeypatch):
    store = mm_store()
    torch.manual_seed(0)
    model = DiffMM(MM_META, embedding_dim=4, denoiser_dims=[8], rebuild_k=2)
    model.attach(store)
    batch = {"users": torch.tensor([0, 1]), "pos": torch.tensor([0, 2]), "neg": torch.tensor([2, 0])}
    out = model.loss(batch)
    torch.testing.assert_close(out["loss"], out["bpr"] + 1e-5 * out["reg"] + 1e-2 * out["cl"] + out["diffusion"])
    out["loss"].backward()
    for m in model.modalities:
        assert model.denoisers[m].in_layers[0].weight.grad.abs().sum() > 0
    # the guidance term by hand: x̂ = 0.5 everywhere, zero denoising loss, both users' rows
    model.zero_grad()
    x_hat = torch.full((2, 3), 0.5)
    monkeypatch.setattr(diffmm_mod, "diffusion_loss", lambda den, sched, x0: (torch.zeros(2), x_hat))
    model._chunks, model._step = [torch.tensor([0, 1])], 0
    feats = {m: f.detach().requires_grad_() for m, f in model.modal_features().items()}
    rows = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # u0: items 0, 1; u1: item 2
    want = sum(0.1 * (x_hat @ feats[m] - rows @ model.item_emb.weight).pow(2).mean() for m in model.modalities)
    got = model.diffusion_step_loss(feats)
    torch.testing.assert_close(got, want.detach())
    assert not got.requires_grad  # features and the item table are detached there: only x̂ carries grad


def test_missing_inputs_fail_clearly():
    with pytest.raises(DataError, match="model=diffmm is multimodal"):
        DiffMM({**MM_META, "features": {}})
    with pytest.raises(DataError, match="cl_mode=modal_pairs"):
        DiffMM({**MM_META, "features": {"text": 5}})
    with pytest.raises(DataError, match="model=diffkg needs a knowledge graph"):
        DiffKG({**META, "n_entities": 0, "n_relations": 0})


# -- TMFUN (in this file: it shares the multimodal toy store) -------------------------------------
def test_tmfun_attention_fusion_by_hand():
    """Identity projections: item 0's query matches modality A (score 1 vs 0) -> weights
    e^(1/sqrt2) / (e^(1/sqrt2) + 1) and the rest; item 1 scores both equally -> 1/2 each."""
    q = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    views = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.0], [0.0, 4.0]]])
    fused, alpha = attention_fusion(q, views, torch.eye(2), torch.eye(2))
    a = math.exp(1 / math.sqrt(2)) / (math.exp(1 / math.sqrt(2)) + 1)
    torch.testing.assert_close(alpha, torch.tensor([[a, 1 - a], [0.5, 0.5]]))
    torch.testing.assert_close(fused, torch.tensor([[a, 1 - a], [1.0, 2.0]]))


def test_tmfun_inter_modal_infonce_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    s = torch.tensor([[1.0, 1 / math.sqrt(2)], [0.0, 1 / math.sqrt(2)]]) / 0.5  # cos(a_i, b_j) / tau
    row = -(torch.log_softmax(s, 1).diagonal()).mean()
    col = -(torch.log_softmax(s.T, 1).diagonal()).mean()
    torch.testing.assert_close(inter_modal_infonce(a, b, 0.5), 0.5 * (row + col))


def test_tmfun_inter_modal_infonce_matches_cross_entropy():
    """The logsumexp form (deterministic on CUDA) equals the cross_entropy form it replaced, in
    value and gradient, both directions of the (B, B) logits."""
    g = torch.Generator().manual_seed(3)
    a0, b0 = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g)
    a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
    ours = inter_modal_infonce(a, b, 0.3)
    ours.backward()
    a2, b2 = a0.clone().requires_grad_(), b0.clone().requires_grad_()
    logits = torch.nn.functional.normalize(a2, dim=1) @ torch.nn.functional.normalize(b2, dim=1).T / 0.3
    target = torch.arange(7)
    ref = 0.5 * (torch.nn.functional.cross_entropy(logits, target)
                 + torch.nn.functional.cross_entropy(logits.T, target))
    ref.backward()
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(a.grad, a2.grad)
    torch.testing.assert_close(b.grad, b2.grad)


def test_tmfun_forward_and_loss_follow_the_formula():
    store = mm_store()
    torch.manual_seed(0)
    model = TMFUN(MM_META, embedding_dim=4, knn_k=1)
    model.attach(store)
    model.eval()
    views = model.modality_views()
    for m in model.modalities:  # z_m = S_m (W x_m + b)
        s = store.frozen_item_graph({m: 1.0}, k=1) @ torch.eye(3)
        torch.testing.assert_close(views[m], s @ model.features.proj[m](store.features[m].float()))
    fused, _ = attention_fusion(model.item_emb.weight, torch.stack([views[m] for m in model.modalities], 1),
                                model.w_q, model.w_k)
    g = (store.frozen_item_graph({m: 0.5 for m in model.modalities}, k=1) @ torch.eye(3)) @ fused
    adj = store.interaction_adj(prune=False) @ torch.eye(5)
    ego = torch.cat([model.user_emb.weight, model.item_emb.weight])
    out = (ego + adj @ ego + adj @ adj @ ego) / 3
    u, i = model.forward()
    torch.testing.assert_close(u, out[:2])
    torch.testing.assert_close(i, out[2:] + torch.nn.functional.normalize(g, dim=1))
    batch = {"users": torch.tensor([0, 1, 0]), "pos": torch.tensor([2, 0, 2]), "neg": torch.tensor([0, 2, 1])}
    loss = model.loss(batch)
    items = torch.tensor([0, 2])  # the distinct positives
    want_cl = inter_modal_infonce(views["text"][items], views["genre"][items], 0.2)
    torch.testing.assert_close(loss["cl"], want_cl)
    torch.testing.assert_close(loss["loss"], loss["bpr"] + 1e-4 * loss["reg"] + 0.01 * loss["cl"])


def test_tmfun_without_features_fails_clearly():
    with pytest.raises(DataError, match="model=tmfun is multimodal"):
        TMFUN({**MM_META, "features": {}})


def test_tmfun_masked_infonce_equals_the_infonce_over_distinct_items():
    """The fixed-shape path of a GPU step (sorted batch + keep mask, no torch.unique) gives the
    value and gradients of the loss over the distinct items."""
    from slifmr.models.losses import distinct_items

    g = torch.Generator().manual_seed(4)
    a0, b0 = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, 3, generator=g, dtype=torch.float64)
    pos = torch.tensor([5, 2, 5, 0, 2, 2, 4])

    def run(fixed: bool):
        a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
        items, keep = distinct_items(pos, fixed_shape=fixed)
        loss = inter_modal_infonce(a[items], b[items], 0.3, keep)
        loss.backward()
        return loss.detach(), a.grad, b.grad

    for x, y in zip(run(False), run(True)):
        torch.testing.assert_close(x, y)

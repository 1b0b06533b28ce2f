"""KGRec, KRDN, KACL: their distinctive pieces against hand-computed values on tiny graphs, the
relation-agnostic per-edge KG ops against dense autograd, the no-KG error, and one short epoch
end to end on ml-100k-kg-tiny through Hydra (configs mirror constructors)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hydra_compose import make_cfg
from slifmr.data.dataset import RecDataset
from slifmr.data.graph_store import GraphStore
from slifmr.errors import DataError
from slifmr.graphs.kg_ops import edge_bilinear, edge_trilinear, relational_aggregate, weighted_relational_aggregate
from slifmr.models.kgrec import KGRec, kgrec_contrast, mask_top_rationale, masked_reconstruction_loss, rationale_scores
from slifmr.models.kacl import KACL, GATLayer, _Graph, concrete_gates, view_contrast
from slifmr.models.krdn import KRDN, adam_update, agreement_mask, antithetic_gates, ccl_loss, disarm_gradient
from slifmr.train import train

# 3 users, 3 items (entities 0-2), entities 3-4, 2 relations
TRAIN = [[0, 0], [0, 1], [1, 1], [1, 2], [2, 2]]
KG = [[0, 0, 3], [1, 0, 3], [1, 1, 4], [2, 1, 4], [3, 1, 4], [3, 0, 2]]
META = {"n_users": 3, "n_items": 3, "n_entities": 5, "n_relations": 2, "features": {}, "n_kg_relations": 5}


def tiny_store() -> GraphStore:
    empty = np.zeros((0, 2), dtype=np.int64)
    ds = RecDataset(name="hand", n_users=3, n_items=3, train=np.array(TRAIN), valid=empty, test=empty,
                    user_ids=np.arange(3).astype(str), item_ids=np.arange(3).astype(str),
                    kg=np.array(KG), n_entities=5, n_relations=2)
    return GraphStore(ds, seed=3)


def tiny_batch() -> dict:
    return {"users": torch.tensor([0, 1, 2]), "pos": torch.tensor([0, 1, 2]), "neg": torch.tensor([2, 0, 1])}


# -- shared per-edge ops --------------------------------------------------------------------------
def test_edge_trilinear_and_weighted_aggregate_match_dense_autograd():
    torch.manual_seed(0)
    a, b, c = (torch.randn(n, 4, dtype=torch.float64, requires_grad=True) for n in (5, 5, 3))
    w = torch.rand(7, 2, dtype=torch.float64, requires_grad=True)
    h, t, r = torch.tensor([0, 0, 1, 2, 4, 4, 3]), torch.tensor([1, 2, 2, 0, 1, 3, 3]), torch.tensor([0, 1, 2, 0, 1, 1, 2])
    s = edge_trilinear(a, b, c, h, t, r, n_heads=2, chunk=3)
    ref = (a[h] * b[t] * c[r]).view(7, 2, 2).sum(-1)
    assert torch.allclose(s, ref)
    out = weighted_relational_aggregate(h, t, r, w, b, c, 6, chunk=2)
    ref_out = torch.zeros(6, 4, dtype=torch.float64).index_add(0, h, w.repeat_interleave(2, 1) * b[t] * c[r])
    assert torch.allclose(out, ref_out)
    assert out[5].abs().sum() == 0  # no edge has head 5
    g1, g2 = torch.randn_like(s), torch.randn_like(out)
    got = torch.autograd.grad((s * g1).sum() + (out * g2).sum(), (a, b, c, w))
    want = torch.autograd.grad((ref * g1).sum() + (ref_out * g2).sum(), (a, b, c, w))
    for x, y in zip(got, want):
        assert torch.allclose(x, y)


def test_edge_bilinear_matches_dense_autograd_across_chunks():
    torch.manual_seed(1)
    a, b = torch.randn(4, 3, dtype=torch.float64, requires_grad=True), torch.randn(6, 3, dtype=torch.float64,
                                                                                 requires_grad=True)
    ia, ib = torch.tensor([0, 0, 1, 3, 3, 2, 0]), torch.tensor([5, 1, 1, 0, 4, 4, 5])  # repeats on both sides
    s = edge_bilinear(a, b, ia, ib, chunk=3)  # 3 chunks, the last one short
    ref = (a @ b.T)[ia, ib]
    assert torch.allclose(s, ref)
    g = torch.randn_like(s)
    got = torch.autograd.grad((s * g).sum(), (a, b))
    want = torch.autograd.grad((ref * g).sum(), (a, b))
    for x, y in zip(got, want):
        assert torch.allclose(x, y)
    assert got[1][2].abs().sum() == 0 and got[1][3].abs().sum() == 0  # items 2, 3 take part in no edge
    with pytest.raises(ValueError, match="lengths differ"):
        edge_bilinear(a, b, ia, ib[:-1])


def test_chunked_edge_ops_reuse_their_buffers_without_stale_rows():
    """The per-edge ops write every chunk into buffers allocated once per call: a last chunk shorter
    than the others must see none of the previous chunk's rows, so any chunking gives bit-for-bit
    the values and gradients of one chunk over all edges (the per-edge products do not depend on
    the chunking; the sums run over the edges in the same order)."""
    torch.manual_seed(5)
    n, e, d = 40, 301, 8
    h, t, r = torch.randint(0, n, (e,)), torch.randint(0, n, (e,)), torch.randint(0, 6, (e,))

    def run(chunk: int) -> list[torch.Tensor]:
        torch.manual_seed(6)
        x = torch.randn(n, d, requires_grad=True)
        rel = torch.randn(6, d, requires_grad=True)
        w = torch.rand(e, 2, requires_grad=True)
        q = x * 2
        s = edge_trilinear(q, q, rel, h, t, r, n_heads=2, chunk=chunk)
        o = weighted_relational_aggregate(h, t, r, w, x, rel, n, chunk=chunk)
        o2 = relational_aggregate(h, t, r, x, rel, n, chunk=chunk)
        g = torch.randn(n, d)
        loss = (s * torch.linspace(-1, 1, e).unsqueeze(1)).sum() + (o * g).sum() + (o2 * g.flip(0)).sum()
        return [s, o, o2, *torch.autograd.grad(loss, (x, rel, w))]

    whole = run(1 << 16)
    for chunk in (64, 100, 300):  # 301 edges: last chunks of 45, 1 and 1 rows
        for got, want in zip(run(chunk), whole):
            assert torch.equal(got, want)


# -- KGRec ----------------------------------------------------------------------------------------
def test_kgrec_rationale_score_matches_the_formula():
    torch.manual_seed(1)
    q, rel = torch.randn(5, 4), torch.randn(3, 4)
    h, t, r = torch.tensor([0, 0, 0, 1, 3]), torch.tensor([1, 2, 3, 0, 4]), torch.tensor([0, 1, 2, 0, 1])
    got = rationale_scores(q, rel, h, t, r, n_heads=2, n_nodes=5)
    logit = torch.stack([((q[a] * q[b] * rel[c]).view(2, 2).sum(-1) / math.sqrt(2)).mean()
                         for a, b, c in zip(h, t, r)])
    # head 0 has three triples: softmax over them, times degree 3; heads 1 and 3 have one: score 1
    e = logit[:3].exp()
    assert torch.allclose(got[:3], 3 * e / e.sum(), atol=1e-6)
    assert torch.allclose(got[3:], torch.ones(2))
    assert torch.isclose(got[:3].sum(), torch.tensor(3.0))  # the mean score of a head's triples is 1


def test_kgrec_masked_reconstruction_loss_by_hand():
    ent = torch.tensor([[1.0, 0.0], [2.0, 1.0], [0.0, -1.0]])
    rel = torch.tensor([[1.0, 1.0], [0.5, 2.0]])
    # triple (0, r0, 1): e_0 . (e_1 ⊙ r_0) = 1*2*1 = 2; triple (2, r1, 1): (0, -1) . (1, 2) = -2
    loss = masked_reconstruction_loss(ent, rel, torch.tensor([0, 2]), torch.tensor([1, 1]), torch.tensor([0, 1]))
    expected = 0.5 * (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(2)))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_kgrec_mask_takes_the_top_rationale_and_as_many_random_triples():
    torch.manual_seed(2)
    scores = torch.tensor([0.1, 5.0, 0.3, 4.0, 0.2, 0.0, 0.4, 0.6])
    mask, idx = mask_top_rationale(scores, 2)
    assert mask[1] and mask[3]  # the two highest
    assert idx.numel() == 4 and set(idx[:2].tolist()) == {1, 3}
    assert mask.sum() >= 2 and mask.sum() <= 4 and mask[idx].all()


def test_kgrec_contrast_by_hand():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    perm = torch.tensor([1, 0])
    tau = 0.5
    got = kgrec_contrast(z1, z2, tau, perm)
    c = 1 / math.sqrt(2)
    # row 0: pos cos 1, neg cos(z1_0, z2_1) = c, cos(z2_0, z1_1) = 0; row 1: pos c, negs cos(z1_1, z2_0)=0, cos(z2_1, z1_0)=c
    rows = [(1.0, c, 0.0), (c, 0.0, c)]
    expected = np.mean([-math.log(math.exp(p / tau) / (2 * math.exp(p / tau) + math.exp(a / tau) + math.exp(b / tau)))
                        for p, a, b in rows])
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_kgrec_step_masks_triples_out_of_the_encoder_and_trains_every_part():
    torch.manual_seed(3)
    model = KGRec(META, embedding_dim=4, mae_msize=1, node_dropout=0.0, mess_dropout=0.0)
    model.attach(tiny_store())
    model.train()
    out = model.loss(tiny_batch())
    assert {"bpr", "reg", "mae", "cl", "loss"} <= set(out) and torch.isfinite(out["loss"])
    out["loss"].backward()
    for p in (model.w_q, model.rel_emb, model.user_emb.weight, model.entity_emb.weight,
              model.proj_ui[0].weight, model.proj_kg[0].weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    # a masked triple takes no part: masking every triple of head 3 leaves entity 3's hop-1 aggregate 0
    heads, tails, rels = model.kg()
    model.eval()
    vals = model.interactions()["vals"]
    _, ent_all = model.encode(heads, tails, rels, vals)
    _, ent_masked = model.encode(heads, tails, rels, vals, edge_mask=heads == 3)
    ent0 = model.entities0()
    assert torch.allclose(ent_masked[3], ent0[3])  # hops add zero vectors (normalised 0 stays 0)
    assert not torch.allclose(ent_all[3], ent0[3])


# -- KRDN -----------------------------------------------------------------------------------------
def test_krdn_disarm_gradient_by_hand_and_unbiased_for_a_linear_loss():
    theta = torch.tensor([0.0, 2.0])
    g = disarm_gradient(theta, torch.tensor([True, True]), torch.tensor([False, True]), torch.tensor(3.0),
                        torch.tensor(1.0))
    assert torch.allclose(g, torch.tensor([0.5 * 2.0 * 1.0 * 0.5, 0.0]))  # equal gates: no signal
    # E[f(b)] = c . sigmoid(theta) for f(b) = c . b: the mean estimate is c sigmoid'(theta) (descent sign)
    torch.manual_seed(4)
    theta = torch.tensor([-1.0, 0.5, 2.0]).repeat(200_000, 1)
    c = torch.tensor([1.0, -2.0, 3.0])
    first, second = antithetic_gates(theta)
    est = disarm_gradient(theta, first, second, (first.float() * c).sum(1, keepdim=True),
                          (second.float() * c).sum(1, keepdim=True)).mean(0)
    sig = torch.sigmoid(theta[0])
    assert torch.allclose(est, c * sig * (1 - sig), atol=0.01)


def test_krdn_agreement_rule_by_hand():
    p, pcf = torch.tensor([0.6, 0.4]), torch.tensor([0.9, 0.1])
    # |sig(.6) - sig(.9)| = 0.0652, |sig(.4) - sig(.1)| = 0.0737
    assert agreement_mask(p, pcf, 0.07).tolist() == [True, False]
    assert agreement_mask(p, pcf, 0.2).tolist() == [True, True]


def test_krdn_contrastive_denoising_loss_by_hand():
    u, pos = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    neg = torch.tensor([[0.9, 0.5, 0.85]])
    for w in (1.0, 0.0):  # a disagreeing interaction (bank 0) loses its positive term
        got = ccl_loss(u, pos, neg, torch.tensor([w]), margin=0.8)
        expected = w * (1 - 1 / math.sqrt(2)) + (0.1 + 0.05) / (2 + 1e-5)
        assert got.item() == pytest.approx(expected, rel=1e-5)


def test_krdn_gated_off_triples_take_no_part_and_gates_learn():
    torch.manual_seed(5)
    model = KRDN(META, embedding_dim=4, n_negatives=3, mess_dropout=0.0)
    model.attach(tiny_store())
    st = model.graph_state()
    heads, tails, rels = st["heads"], st["tails"], st["rels"]
    ent = torch.randn(5, 4)
    keep = (heads == 3) & (tails == 2)  # of head 3's triples (3,r0,2) cross and (3,r1,4) same: only the cross one
    agg, rel_mean = model.kg_hop(0, ent, keep)
    r = int(rels[keep])
    cross = ent[2] * model.rel_emb[r]
    expected = (F.leaky_relu(model.w_cross[0](cross)) + F.leaky_relu(model.w_same[0](torch.zeros(4)))) / 2
    assert torch.allclose(agg[3], expected, atol=1e-6)
    assert torch.allclose(rel_mean[3], model.rel_emb[r].detach(), atol=1e-6)
    # gates: one DisARM step per training step moves the logits; evaluation keeps sigmoid > 0.5
    before = model.gate_logits.clone()
    model.train()
    out = model.loss(tiny_batch())
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and not torch.equal(before, model.gate_logits)
    assert model.user_emb.weight.grad.abs().sum() > 0 and model.cf_item_emb.weight.grad.abs().sum() > 0
    assert torch.equal(model.eval_gates(), model.gate_logits > 0)


def test_krdn_gate_adam_matches_torch_adam():
    torch.manual_seed(0)
    ref = torch.randn(2, 7)
    mine = ref.clone()
    opt = torch.optim.Adam([ref.requires_grad_()], lr=0.05)
    m, v, step = torch.zeros_like(mine), torch.zeros_like(mine), torch.zeros((), dtype=torch.long)
    for _ in range(6):
        grad = torch.randn(2, 7) * 3
        opt.zero_grad()
        ref.grad = grad.clone()
        opt.step()
        adam_update(mine, grad, m, v, step, lr=0.05)
    assert int(step) == 6
    assert torch.allclose(mine, ref.detach(), atol=1e-6, rtol=1e-5)
    assert torch.allclose(m, opt.state[ref]["exp_avg"]) and torch.allclose(v, opt.state[ref]["exp_avg_sq"])


def _krdn_steps(model: KRDN, n: int, seed: int) -> None:
    model.train()
    torch.manual_seed(seed)
    for _ in range(n):
        model.loss(tiny_batch())


def test_krdn_gate_optimiser_state_survives_a_checkpoint():
    """A model restored from a state dict steps its gates exactly as the one it was saved from:
    the gates' Adam moments and step count travel with the checkpoint (a fresh Adam after resume,
    as before, takes a different step: bias correction restarts at step 1)."""
    torch.manual_seed(5)
    model = KRDN(META, embedding_dim=4, n_negatives=3, mess_dropout=0.0, struct_lr=0.1)
    model.attach(tiny_store())
    _krdn_steps(model, 3, seed=1)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert int(state["gate_step"]) == 3 and state["gate_exp_avg_sq"].abs().sum() > 0

    restored = KRDN(META, embedding_dim=4, n_negatives=3, mess_dropout=0.0, struct_lr=0.1)
    restored.attach(tiny_store())
    restored.load_state_dict(state)
    for k, v in state.items():
        assert torch.equal(restored.state_dict()[k], v), k
    _krdn_steps(model, 2, seed=2)
    _krdn_steps(restored, 2, seed=2)
    assert torch.equal(model.gate_logits, restored.gate_logits)
    assert torch.equal(model.gate_exp_avg, restored.gate_exp_avg) and int(restored.gate_step) == 5

    # a checkpoint from before this state was saved still loads; its Adam restarts from zero
    old = {k: v for k, v in state.items() if not k.startswith("gate_exp") and k != "gate_step"}
    legacy = KRDN(META, embedding_dim=4, n_negatives=3, mess_dropout=0.0, struct_lr=0.1)
    legacy.attach(tiny_store())
    legacy.load_state_dict(old)
    assert torch.equal(legacy.gate_logits, state["gate_logits"]) and int(legacy.gate_step) == 0
    assert legacy.gate_exp_avg.shape == state["gate_logits"].shape and not legacy.gate_exp_avg.any()


# -- KACL -----------------------------------------------------------------------------------------
def test_kacl_view_generator_gates_by_hand():
    logits = torch.tensor([0.0, 2.0, -3.0])
    eps = torch.tensor([0.5, 0.25, 0.9])
    got = concrete_gates(logits, 0.5, noise=eps)
    expected = [1 / (1 + math.exp(-(math.log(e / (1 - e)) + lg) / 0.5)) for lg, e in zip(logits.tolist(), eps.tolist())]
    assert torch.allclose(got, torch.tensor(expected), atol=1e-6)
    # a low temperature makes the relaxed gates (nearly) binary
    torch.manual_seed(6)
    hard = concrete_gates(torch.randn(1000), 0.01)
    assert ((hard < 0.01) | (hard > 0.99)).float().mean() > 0.95


def test_kacl_view_contrast_by_hand():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z2 = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    c = 1 / math.sqrt(2)
    # row 0: cos to z2 = (1, c); row 1: (0, c)
    tau = 0.5
    r0 = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + math.exp(c / tau)))
    r1 = -math.log(math.exp(c / tau) / (math.exp(0.0) + math.exp(c / tau)))
    assert view_contrast(z1, z2, tau).item() == pytest.approx((r0 + r1) / 2, rel=1e-6)


def test_kacl_gat_layer_matches_the_formula_and_gates_scale_messages():
    torch.manual_seed(7)
    g = _Graph(torch.tensor([0, 1, 2, 2]), torch.tensor([1, 0, 0, 1]), 3, torch.device("cpu"))  # + self-loops
    layer = GATLayer(4, residual=True, activation=False, negative_slope=0.2, feat_drop=0.0, attn_drop=0.0)
    h = torch.randn(3, 4)
    gates = torch.rand(g.src.numel())
    got = layer(g, h, gates)
    z = layer.fc(h)
    el, er = z @ layer.attn_l[0], z @ layer.attn_r[0]
    want = torch.zeros(3, 4)
    for v in range(3):
        edges = [k for k in range(g.src.numel()) if g.dst[k] == v]
        e = torch.stack([F.leaky_relu(el[g.src[k]] + er[v], 0.2) for k in edges])
        a = torch.softmax(e, 0)
        want[v] = sum(a[j] * gates[k] * z[g.src[k]] for j, k in enumerate(edges)) + h[v] + layer.bias
    assert torch.allclose(got, want, atol=1e-5)


# -- shared checks --------------------------------------------------------------------------------
MODELS = [(KGRec, "kgrec"), (KRDN, "krdn"), (KACL, "kacl")]


@pytest.mark.parametrize("cls, name", MODELS)
def test_kg2_models_without_a_kg_fail_clearly(cls, name):
    meta = {**META, "n_entities": 0, "n_relations": 0, "n_kg_relations": 1}
    with pytest.raises(DataError, match=f"model={name} needs a knowledge graph"):
        cls(meta)


@pytest.mark.parametrize("model", [name for _, name in MODELS])
def test_kg2_model_trains_end_to_end_and_its_config_mirrors_its_constructor(tmp_path, shared_data, model):
    cfg = make_cfg(tmp_path, ["dataset=ml-100k-kg-tiny", f"paths.data_dir={shared_data}", f"model={model}",
                              "debug=fast", "callbacks.progress_bar=null", "trainer.enable_progress_bar=false"])
    metrics = train(cfg)
    for k in (10, 20, 50):
        v = metrics[f"test/recall@{k}"]
        assert math.isfinite(v) and 0.0 <= v <= 1.0, (model, k, v)
    assert math.isfinite(metrics["train/loss"])
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert set(ckpt["hyper_parameters"]) - {"meta", "topk", "lr"} == set(cfg.model) - {"_target_", "topk", "lr"}

"""KGAT, KGIN, KGCL: their key maths against direct formulas on hand-made tiny graphs, KGAT's
alternating CF/KG steps, the no-KG error, and one epoch end to end on ml-100k-kg-tiny."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from slifmr.data.dataset import RecDataset
from slifmr.data.graph_store import GraphStore
from slifmr.errors import DataError
from slifmr.graphs.kg_ops import (collaborative_kg, edge_relations, head_index, relation_ptr, relational_aggregate,
                                  sample_kg_triples)
from slifmr.models.kgat import KGAT, kgat_attention, transr_loss
from slifmr.models.kgcl import KGCL, info_nce, kg_guided_keep_prob
from slifmr.models.kgin import KGIN, cosine_independence_loss, distance_correlation_loss

# 3 users, 3 items (entities 0-2), entities 3-4, 2 relations; entity 3 is also a head, item 2 a tail
TRAIN = [[0, 0], [0, 1], [1, 1], [1, 2], [2, 2]]
KG = [[0, 0, 3], [1, 0, 3], [1, 1, 4], [2, 1, 4], [3, 1, 4], [3, 0, 2]]
META = {"n_users": 3, "n_items": 3, "n_entities": 5, "n_relations": 2, "features": {}, "n_kg_relations": 5}


def tiny_store() -> GraphStore:
    empty = np.zeros((0, 2), dtype=np.int64)
    ds = RecDataset(name="hand", n_users=3, n_items=3, train=np.array(TRAIN), valid=empty, test=empty,
                    user_ids=np.arange(3).astype(str), item_ids=np.arange(3).astype(str),
                    kg=np.array(KG), n_entities=5, n_relations=2)
    return GraphStore(ds, seed=3)


def kg_with_inverse() -> list[tuple[int, int, int]]:
    return [tuple(t) for t in KG] + [(t, r + 2, h) for h, r, t in KG]


# -- the graph views ----------------------------------------------------------------------------
def test_collaborative_kg_adds_inverses_and_interactions_as_relations():
    ckg = collaborative_kg(torch.tensor(KG), torch.tensor([0, 2]), torch.tensor([1, 0]), n_entities=5,
                           n_users=3, n_relations=2)
    rows = [tuple(r) for r in ckg.tolist()]
    # users are nodes 5.. ; interact = relation 4 (user -> item), interacted-by = 5 (item -> user)
    expected = set(kg_with_inverse()) | {(5, 4, 1), (7, 4, 0), (1, 5, 5), (0, 5, 7)}
    assert set(rows) == expected and len(rows) == len(expected)
    assert rows == sorted(rows, key=lambda t: (t[1], t[0], t[2]))  # one contiguous segment per relation
    ptr = relation_ptr(ckg[:, 1], 6)
    assert ptr.tolist() == [0, 3, 6, 9, 12, 14, 16]


def test_edge_relations_expands_the_relation_offsets_and_checks_the_range():
    # relation 0: edges 0-1, relation 1: none, relation 2: edges 2-4
    ptr = torch.tensor([0, 2, 2, 5])
    assert edge_relations(ptr, 3, "KGIN").tolist() == [0, 0, 2, 2, 2]
    assert edge_relations(relation_ptr(torch.tensor([0, 0, 2, 2, 2]), 3), 3, "KGIN").tolist() == [0, 0, 2, 2, 2]
    assert edge_relations(torch.tensor([0, 0, 0]), 0, "KGIN").tolist() == []  # no edges: nothing to check
    with pytest.raises(DataError, match=r"model=kgrec: the KG view has relation ids up to 2 but the model has 2 "
                                        r"\(self-loop 'sim' edges are not supported by KGRec\)"):
        edge_relations(ptr, 2, "KGRec")
    # a relation without edges past the table is fine: only ids that occur count
    assert edge_relations(torch.tensor([0, 2, 2]), 1, "KGIN").tolist() == [0, 0]


def test_kg_batch_is_seeded_existing_and_negatives_stay_in_the_tail_range():
    ckg = collaborative_kg(torch.tensor(KG), torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), 5, 3, 2)
    order, ptr, present = head_index(ckg[:, 0], 8)
    ranges = torch.tensor([0, 5, 8])

    def draw(seed):
        return sample_kg_triples(ckg, order, ptr, present, 500, ranges, torch.Generator().manual_seed(seed))

    h, r, t, tn = draw(1)
    known = {tuple(x) for x in ckg.tolist()}
    assert all((a, b, c) in known for a, b, c in zip(h.tolist(), r.tolist(), t.tolist()))
    assert ((t >= 5) == (tn >= 5)).all()  # a user tail gets a user negative, an entity tail an entity one
    assert set(h.tolist()) == set(ckg[:, 0].tolist())  # every head with edges is drawn (500 draws, 8 heads)
    assert all(torch.equal(a, b) for a, b in zip(draw(1), (h, r, t, tn)))
    assert not torch.equal(draw(2)[0], h)


def _kg_batch_ops(batch_size: int, device: str) -> tuple[list[str], tuple]:
    from torch.profiler import ProfilerActivity, profile

    ckg = collaborative_kg(torch.tensor(KG), torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), 5, 3, 2).to(device)
    order, ptr, present = head_index(ckg[:, 0], 8)
    ranges = torch.tensor([0, 5, 8], device=device)
    gen = torch.Generator(device=device).manual_seed(3)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        out = sample_kg_triples(ckg, order, ptr, present, batch_size, ranges, gen)
    return [e.name for e in prof.events()], out


def test_kg_batch_is_vectorised_and_drawn_on_the_generator_device():
    """A constant number of operations whatever the batch size (no loop over triples), no host read
    of a tensor, and the same draws from a CPU generator passed in as from a seeded one here."""
    few, _ = _kg_batch_ops(4, "cpu")
    many, out = _kg_batch_ops(4096, "cpu")
    aten = lambda names: [n for n in names if n.startswith("aten::")]  # noqa: E731
    assert len(aten(few)) == len(aten(many)) and "aten::_local_scalar_dense" not in many
    ckg = collaborative_kg(torch.tensor(KG), torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), 5, 3, 2)
    order, ptr, present = head_index(ckg[:, 0], 8)
    ref = sample_kg_triples(ckg, order, ptr, present, 4096, torch.tensor([0, 5, 8]), torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(out, ref))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_kg_batch_on_cuda_makes_no_host_device_copy():
    names, out = _kg_batch_ops(4096, "cuda")
    assert all(x.device.type == "cuda" for x in out)
    assert not [n for n in names if "HtoD" in n or "DtoH" in n] and "aten::_local_scalar_dense" not in names


# -- KGAT -----------------------------------------------------------------------------------------
def test_kgat_attention_matches_the_formula_and_sums_to_one_per_head():
    torch.manual_seed(0)
    # 3 entities, 2 relations, edges sorted by relation
    heads, rels, tails = torch.tensor([0, 0, 1, 2, 0]), torch.tensor([0, 0, 0, 1, 1]), torch.tensor([1, 2, 2, 0, 1])
    x, w, e = torch.randn(3, 4), torch.randn(2, 4, 3), torch.randn(2, 3)
    att = kgat_attention(x, heads, tails, relation_ptr(rels, 2), w, e, 3)
    score = torch.stack([(x[t] @ w[r]) @ torch.tanh(x[h] @ w[r] + e[r]) for h, r, t in zip(heads, rels, tails)])
    expected = torch.empty(5)
    for h in range(3):
        m = heads == h
        expected[m] = torch.softmax(score[m], 0)
    torch.testing.assert_close(att, expected)
    sums = torch.zeros(3).index_add(0, heads, att)
    torch.testing.assert_close(sums, torch.ones(3))


def test_transr_loss_matches_the_formula():
    torch.manual_seed(1)
    x, w, e = torch.randn(6, 4), torch.randn(3, 4, 2), torch.randn(3, 2)
    h, r, t, tn = torch.tensor([0, 1, 5]), torch.tensor([2, 0, 2]), torch.tensor([3, 4, 1]), torch.tensor([2, 2, 0])
    loss, reg = transr_loss(x, w, e, h, r, t, tn)
    g = lambda a, b, c: ((x[a] @ w[b] + e[b] - x[c] @ w[b]) ** 2).sum()
    direct = sum(-math.log(torch.sigmoid(g(a, b, n) - g(a, b, c)).item()) for a, b, c, n in zip(h, r, t, tn)) / 3
    assert loss.item() == pytest.approx(direct, rel=1e-5)
    sq = sum((x[a] @ w[b]).pow(2).sum() + e[b].pow(2).sum() + (x[c] @ w[b]).pow(2).sum() + (x[n] @ w[b]).pow(2).sum()
             for a, b, c, n in zip(h, r, t, tn))
    assert reg.item() == pytest.approx(0.5 * sq.item() / 3, rel=1e-5)


def kgat_model(**kw) -> KGAT:
    torch.manual_seed(0)
    m = KGAT(META, embedding_dim=8, kge_dim=4, layer_sizes=[8, 4], kg_batch_size=16, lr=0.01, **kw)
    m.attach(tiny_store())
    return m


def test_kgat_cf_and_kg_steps_alternate_and_update_their_own_parameters(monkeypatch):
    model = kgat_model()
    opts = model.configure_optimizers()
    model.optimizers = lambda: opts
    model.manual_backward = lambda loss: loss.backward()
    names = {id(p): n for n, p in model.named_parameters()}
    steps: list[tuple[str, set[str]]] = []

    for kind, opt in zip(("cf", "kg"), opts):
        original = opt.step

        def step(*a, _kind=kind, _original=original, **k):
            got = {names[id(p)] for p in model.parameters() if p.grad is not None and p.grad.abs().sum() > 0}
            steps.append((_kind, got))
            return _original(*a, **k)

        monkeypatch.setattr(opt, "step", step)

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = {"users": torch.tensor([0, 1, 2]), "pos": torch.tensor([1, 2, 2]), "neg": torch.tensor([2, 0, 1])}
    model.training_step(batch, 0)

    assert [k for k, _ in steps] == ["cf", "kg"]  # one CF update, then one KG update
    cf, kg = steps[0][1], steps[1][1]
    aggregators = {n for n in names.values() if n.startswith(("w_sum.", "w_bi."))}
    assert aggregators <= cf and {"user_emb.weight", "item_emb.weight", "entity_emb.weight"} <= cf
    assert not {"rel_emb", "trans_w"} & cf  # attention is a constant in the CF step
    assert {"rel_emb", "trans_w"} <= kg and not aggregators & kg
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert {"rel_emb", "trans_w", "w_sum.0.weight", "w_bi.1.weight"} <= changed


def test_kgat_kg_batch_is_seeded_by_epoch_and_step():
    model = kgat_model()
    a, b, c = model.kg_batch(0), model.kg_batch(0), model.kg_batch(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_kgat_embeddings_concatenate_normalised_layers():
    model = kgat_model().eval()
    users, items = model.embeddings()
    assert users.shape == (3, 8 + 8 + 4) and items.shape == (3, 8 + 8 + 4)
    torch.testing.assert_close(users[:, :8], model.user_emb.weight)
    torch.testing.assert_close(items[:, 8:16].norm(dim=1), torch.ones(3))


# -- KGIN -----------------------------------------------------------------------------------------
def test_relational_aggregate_matches_the_formula_and_its_gradient():
    torch.manual_seed(2)
    heads, tails, rels = torch.tensor([0, 0, 1, 3, 3, 3]), torch.tensor([1, 2, 0, 0, 1, 2]), torch.tensor([0, 1, 1, 0, 0, 1])
    x = torch.randn(4, 3, dtype=torch.double, requires_grad=True)
    rel = torch.randn(2, 3, dtype=torch.double, requires_grad=True)
    out = relational_aggregate(heads, tails, rels, x, rel, 4, chunk=4)
    direct = torch.zeros(4, 3, dtype=torch.double)
    for h in range(4):
        msgs = [rel[r] * x[t] for hh, t, r in zip(heads.tolist(), tails.tolist(), rels.tolist()) if hh == h]
        if msgs:
            direct[h] = torch.stack(msgs).mean(0)
    torch.testing.assert_close(out, direct)
    assert out[2].abs().sum() == 0  # no edges: zeros
    assert torch.autograd.gradcheck(lambda a, b: relational_aggregate(heads, tails, rels, a, b, 4, chunk=4), (x, rel))
    summed = relational_aggregate(heads, tails, rels, x, rel, 4, normalise=False)
    torch.testing.assert_close(summed[3], direct[3] * 3)


def dcor_direct(a: np.ndarray, b: np.ndarray) -> float:
    """Sample distance correlation (Szekely et al. 2007)."""
    def centred(v):
        d = np.abs(v[:, None] - v[None, :])
        return d - d.mean(0) - d.mean(1)[:, None] + d.mean()
    A, B = centred(a), centred(b)
    return math.sqrt((A * B).mean()) / math.sqrt(math.sqrt((A * A).mean()) * math.sqrt((B * B).mean()))


def test_independence_losses_match_the_formulas():
    torch.manual_seed(3)
    # scaled so the official 1e-8 guard inside each distance's sqrt (~1e-4 absolute) is negligible;
    # distance correlation itself is scale-free
    z = 100 * torch.randn(4, 10, dtype=torch.double)
    zn = z.numpy()
    direct = sum(dcor_direct(zn[i], zn[j]) for i in range(4) for j in range(i + 1, 4))
    assert distance_correlation_loss(z).item() == pytest.approx(direct, rel=1e-5)
    cos = sum(float(F.cosine_similarity(z[i], z[j], dim=0)) ** 2 for i in range(4) for j in range(i + 1, 4))
    assert cosine_independence_loss(z).item() == pytest.approx(cos, rel=1e-6)
    # dependent rows (an affine copy) have distance correlation 1
    same = torch.stack([z[0], 2 * z[0] + 1])
    assert distance_correlation_loss(same).item() == pytest.approx(1.0, abs=1e-3)


def test_kgin_one_hop_matches_the_formula():
    torch.manual_seed(4)
    model = KGIN(META, embedding_dim=4, context_hops=1, node_dropout=0.0, mess_dropout=0.0)
    model.attach(tiny_store())
    model.eval()
    users, items = model.embeddings()
    with torch.no_grad():
        ent = torch.cat([model.item_emb.weight, model.entity_emb.weight[:2]])
        rel = model.rel_emb
        agg = torch.zeros(5, 4)
        for h in range(5):
            msgs = [rel[r] * ent[t] for hh, r, t in kg_with_inverse() if hh == h]
            agg[h] = torch.stack(msgs).mean(0)
        exp_items = ent[:3] + F.normalize(agg, dim=1)[:3]
        intents = torch.softmax(model.intent_att, -1) @ rel  # (F, d)
        exp_users = torch.empty(3, 4)
        for u in range(3):
            m_u = torch.stack([ent[i] for uu, i in TRAIN if uu == u]).mean(0)
            beta = torch.softmax(model.user_emb.weight[u] @ model.latent_emb.T, 0)
            exp_users[u] = model.user_emb.weight[u] + F.normalize(m_u * (beta @ intents) + m_u, dim=0)
    torch.testing.assert_close(items, exp_items)
    torch.testing.assert_close(users, exp_users)


def test_kgin_independence_reads_the_configured_intent_representation():
    att = KGIN(META, embedding_dim=4, independence="distance", independence_on="attention")
    torch.testing.assert_close(att.independence_loss(), distance_correlation_loss(att.intent_att))
    emb = KGIN(META, embedding_dim=4, independence="cosine", independence_on="embedding")
    intents = torch.softmax(emb.intent_att, -1) @ emb.rel_emb
    torch.testing.assert_close(emb.independence_loss(), cosine_independence_loss(intents))


def test_kgin_loss_has_its_terms_and_trains_intents():
    model = KGIN(META, embedding_dim=4)
    model.attach(tiny_store())
    batch = {"users": torch.tensor([0, 1]), "pos": torch.tensor([0, 2]), "neg": torch.tensor([2, 0])}
    out = model.loss(batch)
    total = out["bpr"] + 1e-5 * out["reg"] + 1e-4 * out["independence"]
    torch.testing.assert_close(out["loss"], total)
    out["loss"].backward()
    for p in (model.intent_att, model.latent_emb, model.rel_emb, model.entity_emb.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0


# -- KGCL -----------------------------------------------------------------------------------------
def kgcl_direct_item_embedding(model: KGCL, edges: list[tuple[int, int, int]]) -> torch.Tensor:
    ent = torch.cat([model.item_emb.weight, model.entity_emb.weight[:2]])
    out = model.item_emb.weight.clone()
    for i in range(3):
        mine = [(r, t) for h, r, t in edges if h == i]
        if not mine:
            continue
        s = torch.stack([F.leaky_relu(model.att_fc(torch.cat([ent[i], ent[t]])) @ model.rel_emb.weight[r], 0.2)
                         for r, t in mine])
        a = torch.softmax(s, 0)
        out[i] = out[i] + sum(w * ent[t] for w, (_, t) in zip(a, mine))
    return out


def kgcl_model(**kw) -> KGCL:
    torch.manual_seed(5)
    m = KGCL(META, embedding_dim=4, **kw)
    m.attach(tiny_store())
    return m


def test_kgcl_item_kg_aggregation_matches_the_formula():
    model = kgcl_model().eval()
    item_edges = [e for e in kg_with_inverse() if e[0] < 3]
    with torch.no_grad():
        got = model.item_kg_embedding(model.item_kg())
        torch.testing.assert_close(got, kgcl_direct_item_embedding(model, item_edges))


def test_kgcl_views_consistency_and_guided_dropout():
    model = kgcl_model(kg_drop=0.5, ui_drop=0.3)
    views = model.build_views(0)
    with torch.no_grad():
        z = [kgcl_direct_item_embedding(model, list(zip(h.tolist(), r.tolist(), t.tolist())))
             for h, t, r, _ in views["kg"]]
    torch.testing.assert_close(views["consistency"], F.cosine_similarity(z[0], z[1], dim=1))
    full = {tuple(e) for e in torch.stack(model.item_kg()[:3], 1).tolist()}
    assert all({tuple(e) for e in torch.stack(v[:3], 1).tolist()} <= full for v in views["kg"])
    # each interaction view keeps exactly the interactions of its kept items, symmetric-normalised
    for (rows, cols, vals, _), keep in zip(views["ui"], views["items"]):
        pairs = {(u, i) for u, i in TRAIN if keep[i]}
        got = {(r, c - 3) for r, c in zip(rows.tolist(), cols.tolist()) if r < 3}
        assert got == pairs
        deg = torch.zeros(6).index_add(0, rows, torch.ones(rows.numel()))
        torch.testing.assert_close(vals, (deg[rows] * deg[cols]).rsqrt())
    again = model.build_views(0)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(again["kg"], views["kg"]))


def test_kg_guided_keep_prob_matches_the_formula():
    c = torch.tensor([0.9, -0.2, 0.5, 0.1])
    s = c.exp()
    w = ((s - s.min()) / (s.max() - s.min())).clamp(min=0.3)
    expected = (0.9 * w / w.mean()).clamp(max=0.95)
    torch.testing.assert_close(kg_guided_keep_prob(c, 0.1), expected)
    assert kg_guided_keep_prob(c, 0.1)[0] == pytest.approx(0.95)  # the most consistent item is capped
    torch.testing.assert_close(kg_guided_keep_prob(torch.zeros(3), 0.2), torch.full((3,), 0.8))


def test_info_nce_matches_the_formula():
    torch.manual_seed(6)
    z1, z2 = torch.randn(3, 5), torch.randn(6, 5)
    idx = torch.tensor([0, 2, 5])
    got = info_nce(z1, z2[idx], z2, 0.2)
    cos = lambda a, b: F.cosine_similarity(a, b, dim=0)
    direct = 0.0
    for b in range(3):
        num = math.exp(cos(z1[b], z2[idx[b]]) / 0.2)
        den = sum(math.exp(cos(z1[b], z2[j]) / 0.2) for j in range(6))
        direct += -math.log(num / den)
    assert got.item() == pytest.approx(direct / 3, rel=1e-5)
    # the chunked (checkpointed) path gives the same value and gradient
    za, zb = z1.clone().requires_grad_(), z1.clone().requires_grad_()
    whole, chunked = info_nce(za, z2[idx], z2, 0.2), info_nce(zb, z2[idx], z2, 0.2, chunk=2)
    whole.backward(), chunked.backward()
    torch.testing.assert_close(chunked, whole)
    torch.testing.assert_close(zb.grad, za.grad)


def test_kgcl_loss_adds_the_weighted_contrastive_terms():
    model = kgcl_model(cl_weight=0.1)
    batch = {"users": torch.tensor([0, 1]), "pos": torch.tensor([0, 2]), "neg": torch.tensor([2, 0])}
    torch.manual_seed(7)
    out = model.loss(batch)
    total = out["bpr"] + 1e-4 * out["reg"] + 0.1 * (out["cl_user"] + out["cl_item"])
    torch.testing.assert_close(out["loss"], total)
    assert "cl_user" not in kgcl_model(cl_weight=0.0).loss(batch)


# -- errors and end to end ------------------------------------------------------------------------
@pytest.mark.parametrize("cls, name", [(KGAT, "kgat"), (KGIN, "kgin"), (KGCL, "kgcl")])
def test_kg_models_without_a_kg_fail_clearly(cls, name):
    meta = {**META, "n_entities": 0, "n_relations": 0, "n_kg_relations": 1}
    with pytest.raises(DataError, match=f"model={name} needs a knowledge graph"):
        cls(meta)

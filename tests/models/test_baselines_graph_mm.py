"""NGCF, BM3 and FREEDOM (paper Table II baselines): each model's key maths against a direct dense
formula on hand-built graphs, FREEDOM's frozen item graph and per-epoch pruned interaction graph
(GraphStore.frozen_item_graph / interaction_adj(stream="freedom")), the missing-features error, and one
epoch end to end through Hydra compose on ml-100k-kg-tiny."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from slifmr.data.dataset import RecDataset
from slifmr.data.graph_store import GraphStore
from slifmr.errors import DataError
from slifmr.models.bm3 import BM3, bootstrap_loss
from slifmr.models.freedom import FREEDOM
from slifmr.models.ngcf import NGCF, drop_entries


# -- hand-built data ------------------------------------------------------------------------------
def make_store(n_users: int, n_items: int, train_pairs, features=None, masks=None, **kw) -> GraphStore:
    empty = np.zeros((0, 2), dtype=np.int64)
    feats = {k: np.asarray(v, dtype=np.float32) for k, v in (features or {}).items()}
    ds = RecDataset(
        name="hand", n_users=n_users, n_items=n_items, train=np.array(train_pairs, dtype=np.int64),
        valid=empty, test=empty, user_ids=np.arange(n_users).astype(str), item_ids=np.arange(n_items).astype(str),
        features=feats,
        feature_masks={k: np.asarray((masks or {}).get(k, np.abs(v).sum(1) > 0)) for k, v in feats.items()},
    )
    return GraphStore(ds, **kw)


def meta_of(store: GraphStore) -> dict:
    return {"n_users": store.n_users, "n_items": store.n_items, "n_entities": 0, "n_relations": 0,
            "features": {m: int(x.shape[1]) for m, x in store.features.items()},
            "n_kg_relations": store.n_kg_relations}


def dense(op, n: int) -> torch.Tensor:
    return op @ torch.eye(n)


def dense_norm_bipartite(n_users: int, n_items: int, pairs) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of the bipartite graph, written out densely (fine at this size)."""
    n = n_users + n_items
    a = torch.zeros(n, n)
    for u, i in pairs:
        a[u, n_users + i] = a[n_users + i, u] = 1.0
    d = a.sum(1)
    s = torch.where(d > 0, d.clamp_min(1e-12).rsqrt(), torch.zeros_like(d))
    return s[:, None] * a * s[None, :]


def randomise(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial values everywhere (biases, fine-tuning offsets), so no term hides behind a zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


# 2 users x 3 items: u0-{i0, i1}, u1-{i1, i2}
NGCF_PAIRS = [(0, 0), (0, 1), (1, 1), (1, 2)]


# -- NGCF -----------------------------------------------------------------------------------------
def test_ngcf_propagation_matches_the_dense_layer_formula():
    store = make_store(2, 3, NGCF_PAIRS)
    model = NGCF(meta_of(store), embedding_dim=4, layer_sizes=[3, 2], mess_dropout=[0.3, 0.3])
    model.attach(store)
    randomise(model)
    model.eval()  # no message dropout

    lap = dense_norm_bipartite(2, 3, NGCF_PAIRS)
    # hand check of L: user 0 (degree 2) - item 0 (degree 1): 1/sqrt(2); user 0 - item 1 (degree 2): 1/2
    assert lap[0, 2].item() == pytest.approx(1 / math.sqrt(2))
    assert lap[0, 3].item() == pytest.approx(0.5)
    torch.testing.assert_close(dense(store.interaction_adj(prune=False), 5), lap)

    e = torch.cat([model.user_emb.weight, model.item_emb.weight]).detach()
    outs = [e]
    for w1, w2 in zip(model.w1, model.w2):
        le = lap @ e
        pre = (lap + torch.eye(5)) @ e @ w1.weight.T + w1.bias + (le * e) @ w2.weight.T + w2.bias
        e = torch.where(pre > 0, pre, 0.2 * pre)  # LeakyReLU, slope 0.2
        outs.append(e / e.norm(dim=1, keepdim=True))
    expected = torch.cat(outs, 1)  # (5, 4 + 3 + 2)

    users, items = model.embeddings()
    assert users.shape == (2, 9) and items.shape == (3, 9)
    torch.testing.assert_close(torch.cat([users, items]).detach(), expected)


def test_ngcf_loss_is_bpr_plus_l2_on_final_representations_and_dropout_is_training_only():
    store = make_store(2, 3, NGCF_PAIRS)
    model = NGCF(meta_of(store), embedding_dim=4, layer_sizes=[4], mess_dropout=0.0, reg_weight=0.1)
    model.attach(store)
    randomise(model, 1)
    batch = {"users": torch.tensor([0, 1, 1]), "pos": torch.tensor([0, 2, 1]), "neg": torch.tensor([2, 0, 0])}
    users, items = model.embeddings()
    u, p, n = users[batch["users"]], items[batch["pos"]], items[batch["neg"]]
    bpr = -F.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()
    reg = 0.5 * (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / 3
    out = model.loss(batch)
    torch.testing.assert_close(out["bpr"], bpr)
    torch.testing.assert_close(out["loss"], bpr + 0.1 * reg)

    drop = NGCF(meta_of(store), embedding_dim=4, layer_sizes=[4], mess_dropout=0.5)
    drop.attach(store)
    drop.train()
    torch.manual_seed(0)
    a = drop.embeddings()[1]
    b = drop.embeddings()[1]
    assert not torch.allclose(a, b)  # message dropout re-sampled in training
    drop.eval()
    torch.testing.assert_close(drop.embeddings()[1], drop.embeddings()[1])


def test_node_dropout_drops_entries_and_rescales_survivors():
    pairs = [(u, i) for u in range(20) for i in range(30) if (u + i) % 3]
    store = make_store(20, 30, pairs)
    full = store.interaction_adj(prune=False)
    torch.manual_seed(0)
    dropped = drop_entries(full, 0.25)
    a, b = dense(full, 50), dense(dropped, 50)
    kept = b != 0
    torch.testing.assert_close(b[kept], a[kept] / 0.75)
    assert not bool((kept & (a == 0)).any())
    frac = kept.sum().item() / (a != 0).sum().item()
    assert 0.65 < frac < 0.85


# -- BM3 ------------------------------------------------------------------------------------------
BM3_PAIRS = [(0, 0), (0, 1), (1, 1), (1, 2), (2, 0), (2, 3)]
MM_FEATURES = {"visual": [[1, 0, 0], [0, 1, 0], [1, 0.1, 0], [0, 0, 0]],  # item 3 has no image
               "text": [[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]]}


def bm3_direct(model: BM3, batch, detach_targets: bool = True) -> torch.Tensor:
    """BM3's loss with dropout 0 written out densely from the model's parameters."""
    U, I = model.n_users, model.n_items
    lap = dense_norm_bipartite(U, I, BM3_PAIRS)
    e0 = torch.cat([model.user_emb.weight, model.item_emb.weight])
    enc = (e0 + lap @ e0) / 2  # mean of layers 0..1
    u_enc, i_enc = enc[:U], enc[U:] + model.item_emb.weight
    pred = model.predictor
    sg = (lambda x: x.detach()) if detach_targets else (lambda x: x)
    users, items = batch["users"], batch["pos"]

    def one_minus_cos(a, b, w=None):
        c = F.cosine_similarity(a, b, dim=1)
        return 1 - c.mean() if w is None else ((1 - c) * w).sum() / w.sum()

    loss = one_minus_cos(pred(u_enc[users]), sg(i_enc[items])) + one_minus_cos(pred(i_enc[items]), sg(u_enc[users]))
    mm = 0.0
    masks = {"visual": torch.tensor([1.0, 1, 1, 0]), "text": torch.ones(4)}
    for m, x in MM_FEATURES.items():
        f = model.features.proj[m](torch.tensor(x, dtype=torch.float32) + model.features.delta[m])
        w = masks[m][items]
        mm = mm + one_minus_cos(pred(f[items]), sg(i_enc[items]), w) + one_minus_cos(pred(f[items]), sg(f[items]), w)
    reg = (u_enc.norm() + i_enc.norm()) / I
    return loss + model.cl_weight * mm + model.reg_weight * reg


def make_bm3(**kw) -> tuple[BM3, GraphStore]:
    store = make_store(3, 4, BM3_PAIRS, MM_FEATURES)
    model = BM3(meta_of(store), embedding_dim=4, n_layers=1, **kw)
    model.attach(store)
    randomise(model, 2)
    return model, store


BM3_BATCH = {"users": torch.tensor([0, 1, 2, 2]), "pos": torch.tensor([1, 2, 3, 0]), "neg": torch.tensor([3, 3, 1, 1])}


def test_bm3_loss_matches_the_direct_formula_and_targets_get_no_gradient():
    model, _ = make_bm3(dropout=0.0, reg_weight=0.1, cl_weight=2.0)
    model.train()
    got = model.loss(BM3_BATCH)["loss"]
    want = bm3_direct(model, BM3_BATCH)
    torch.testing.assert_close(got, want)

    params = [p for p in model.parameters()]
    g_model = torch.autograd.grad(got, params)
    g_direct = torch.autograd.grad(bm3_direct(model, BM3_BATCH), params)
    for a, b in zip(g_model, g_direct):
        torch.testing.assert_close(a, b)
    # the comparison can fail: letting gradient through the targets changes the gradients
    g_leaky = torch.autograd.grad(bm3_direct(model, BM3_BATCH, detach_targets=False), params)
    assert any(not torch.allclose(a, b) for a, b in zip(g_model, g_leaky))


def test_bootstrap_loss_stops_the_gradient_at_the_target():
    online = torch.randn(5, 3, requires_grad=True)
    target = torch.randn(5, 3, requires_grad=True)
    bootstrap_loss(online, target).backward()
    assert target.grad is None
    assert online.grad is not None and online.grad.abs().sum() > 0
    # masked rows are out of the mean
    w = torch.tensor([1.0, 0, 1, 0, 0])
    expect = 1 - F.cosine_similarity(online[[0, 2]], target[[0, 2]], dim=1).mean()
    torch.testing.assert_close(bootstrap_loss(online, target, w), expect)


def test_bm3_target_dropout_perturbs_only_in_the_loss_and_scores_use_the_predictor():
    model, _ = make_bm3(dropout=0.5)
    model.train()
    torch.manual_seed(0)
    a = model.loss(BM3_BATCH)["loss"]
    b = model.loss(BM3_BATCH)["loss"]
    assert not torch.allclose(a, b)  # a fresh dropout view per step
    model.eval()
    users, items = model.embeddings()
    u_enc, i_enc = model.encode()
    torch.testing.assert_close(users, model.predictor(u_enc))
    torch.testing.assert_close(items, model.predictor(i_enc))


# -- FREEDOM --------------------------------------------------------------------------------------
# k = 2 neighbours, self excluded, unweighted, every valid row sums to 2 -> every edge 1/2.
# visual: item 3 is missing, items 0-2 each take the other two. text (cosines by hand):
# 0 -> {1 (0.99), 3 (0.11)}, 1 -> {0 (0.99), 3 (0.22)}, 2 -> {3 (0.99), 1 (0.11)}, 3 -> {2 (0.99), 1 (0.22)}
KNN_VISUAL = {0: [1, 2], 1: [0, 2], 2: [0, 1]}
KNN_TEXT = {0: [1, 3], 1: [0, 3], 2: [3, 1], 3: [2, 1]}


def knn_dense(neigh: dict[int, list[int]], n: int = 4) -> torch.Tensor:
    s = torch.zeros(n, n)
    for r, cols in neigh.items():
        s[r, cols] = 0.5
    return s


def make_freedom(**kw) -> tuple[FREEDOM, GraphStore]:
    store = make_store(3, 4, BM3_PAIRS, MM_FEATURES)
    model = FREEDOM(meta_of(store), embedding_dim=4, knn_k=2, **kw)
    model.attach(store)
    randomise(model, 3)
    return model, store


def test_frozen_item_graph_is_the_weighted_sum_of_normalised_knn_graphs():
    store = make_store(3, 4, BM3_PAIRS, MM_FEATURES)
    weights = {"visual": 0.1, "text": 0.9}
    got = dense(store.frozen_item_graph(weights, 2), 4)
    torch.testing.assert_close(got, 0.1 * knn_dense(KNN_VISUAL) + 0.9 * knn_dense(KNN_TEXT))
    assert store.frozen_item_graph(weights, 2) is store.frozen_item_graph(weights, 2)  # cached
    # frozen: neither a new epoch nor the self-loop door changes it
    store.set_epoch(3)
    store.set_item_graph(torch.sparse_coo_tensor(torch.tensor([[0], [3]]), torch.tensor([1.0]), (4, 4),
                                                   check_invariants=True))
    torch.testing.assert_close(dense(store.frozen_item_graph(weights, 2), 4), got)
    with pytest.raises(ValueError, match="unknown modalities"):
        store.frozen_item_graph({"audio": 1.0}, 2)


def test_freedom_mix_weights_follow_mm_image_weight():
    assert FREEDOM.mix_weights(["visual", "text"], 0.1, "visual") == {"visual": 0.1, "text": 0.9}
    assert FREEDOM.mix_weights(["text", "genre"], 0.1, "visual") == {"text": 0.5, "genre": 0.5}
    w = FREEDOM.mix_weights(["visual", "text", "genre"], 0.2, "visual")
    assert w["visual"] == 0.2 and w["text"] == pytest.approx(0.4) and w["genre"] == pytest.approx(0.4)


def test_pruned_interaction_graph_is_resampled_per_epoch_and_whole_at_evaluation():
    pairs = [(u, i) for u in range(12) for i in range(15) if (u * 7 + i) % 4]
    store = make_store(12, 15, pairs)
    n = 27
    e0 = dense(store.interaction_adj(ratio=0.8, stream="freedom"), n)
    assert store.interaction_adj(ratio=0.8, stream="freedom") is store.interaction_adj(ratio=0.8, stream="freedom")  # one sample per epoch
    assert int((e0 != 0).sum()) == 2 * round(0.2 * len(pairs))  # both directions of the kept pairs
    torch.testing.assert_close(e0, e0.T)
    kept = [(u, i) for u, i in pairs if e0[u, 12 + i] != 0]
    torch.testing.assert_close(e0, dense_norm_bipartite(12, 15, kept))  # re-normalised on the kept edges
    store.set_epoch(1)
    e1 = dense(store.interaction_adj(ratio=0.8, stream="freedom"), n)
    assert not torch.equal(e0 != 0, e1 != 0)
    torch.testing.assert_close(dense(store.interaction_adj(prune=False, ratio=0.8, stream="freedom"), n),
                               dense_norm_bipartite(12, 15, pairs))


def test_freedom_forward_and_loss_match_the_direct_formula():
    model, store = make_freedom(prune_ratio=0.5, reg_weight=0.3)
    s = 0.1 * knn_dense(KNN_VISUAL) + 0.9 * knn_dense(KNN_TEXT)  # image_modality 'visual' gets 0.1
    item_w = model.item_emb.weight

    def direct(lap):
        e0 = torch.cat([model.user_emb.weight, item_w])
        e1 = lap @ e0
        e = (e0 + e1 + lap @ e1) / 3  # n_ui_layers = 2
        return e[:3], e[3:] + s @ item_w  # n_mm_layers = 1

    model.eval()
    users, items = model.embeddings()
    want_u, want_i = direct(dense_norm_bipartite(3, 4, BM3_PAIRS))
    torch.testing.assert_close(users, want_u)
    torch.testing.assert_close(items, want_i)

    model.train()
    lap = dense(store.interaction_adj(ratio=0.5, stream="freedom"), 7)
    assert int((lap != 0).sum()) == 2 * 3  # half the 6 interactions, both directions
    u_all, i_all = direct(lap)
    b = BM3_BATCH
    u = u_all[b["users"]]
    bpr = -F.logsigmoid((u * i_all[b["pos"]]).sum(1) - (u * i_all[b["neg"]]).sum(1)).mean()
    mm = 0.0
    masks = {"visual": torch.tensor([True, True, True, False]), "text": torch.ones(4, dtype=torch.bool)}
    for m, x in MM_FEATURES.items():
        f = model.features.proj[m](torch.tensor(x, dtype=torch.float32) + model.features.delta[m])
        ok = masks[m][b["pos"]] & masks[m][b["neg"]]  # visual: pairs touching item 3 are left out
        terms = -F.logsigmoid((u * f[b["pos"]]).sum(1) - (u * f[b["neg"]]).sum(1))
        mm = mm + terms[ok].mean()
    out = model.loss(b)
    torch.testing.assert_close(out["bpr"], bpr)
    torch.testing.assert_close(out["loss"], bpr + 0.3 * mm)


def test_freedom_item_graph_is_frozen_state_not_a_parameter_while_the_ui_graph_changes():
    model, store = make_freedom(prune_ratio=0.5)
    n_items = model.n_items
    # nothing but the ID tables and the feature projections / fine-tuning offsets is state
    keys = set(model.state_dict())
    assert keys == {"user_emb.weight", "item_emb.weight", *(f"features.proj.{m}.{w}" for m in MM_FEATURES
                    for w in ("weight", "bias")), *(f"features.delta.{m}" for m in MM_FEATURES)}
    before = dense(model.item_graph(), n_items)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model.train()
    items_by_epoch = []
    for epoch in range(3):
        store.set_epoch(epoch)
        opt.zero_grad()
        model.loss(BM3_BATCH)["loss"].backward()
        opt.step()
        items_by_epoch.append(dense(store.interaction_adj(ratio=0.5, stream="freedom"), 7) != 0)
        torch.testing.assert_close(dense(model.item_graph(), n_items), before)
    assert not all(torch.equal(items_by_epoch[0], x) for x in items_by_epoch[1:])


# -- missing inputs -------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, name", [(BM3, "bm3"), (FREEDOM, "freedom")])
def test_multimodal_models_without_features_fail_clearly(cls, name):
    store = make_store(2, 3, NGCF_PAIRS)
    with pytest.raises(DataError, match=rf"model={name} .*needs item feature matrices.*_feat\.npy"):
        cls(meta_of(store))

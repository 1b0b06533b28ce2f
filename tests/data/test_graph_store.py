"""GraphStore on hand-built datasets: A (Eq. 1, 7, 18), S (Eq. 2-4), the KG view, pruning (Eq. 6)
and the self-loop door ``set_item_graph``. Expected graphs are computed densely here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slifmr.data.dataset import RecDataset
from slifmr.data.graph_store import GraphStore

U, I = 3, 4
TRAIN = [(0, 0), (0, 1), (1, 1), (1, 2), (2, 0), (2, 2), (2, 3)]
R = 2  # relations; entity 4 is the one attribute entity
TRIPLES = [(0, 0, 4), (2, 0, 4), (1, 1, 4), (3, 1, 0)]
FEAT = [[1.0, 0.0], [1.0, 1.0], [0.5, 1.0], [1.0, 0.9]]
MASK = [True, True, True, False]  # item 3 has no such modality (its row is *not* zero on purpose)
G_EDGES = {(0, 1): 0.6, (1, 0): 0.6, (1, 3): 0.3, (3, 2): 0.8}  # directed on purpose




def tiny_dataset() -> RecDataset:
    empty = np.zeros((0, 2), dtype=np.int64)
    return RecDataset(
        name="tiny", n_users=U, n_items=I, train=np.array(TRAIN, dtype=np.int64), valid=empty, test=empty,
        user_ids=np.array([f"u{k}" for k in range(U)]), item_ids=np.array([f"i{k}" for k in range(I)]),
        kg=np.array(TRIPLES, dtype=np.int64), n_entities=5, n_relations=R, relation_names=["r0", "r1"],
        features={"v": np.array(FEAT, dtype=np.float32)}, feature_masks={"v": np.array(MASK)},
    )


def dense(op, n: int) -> torch.Tensor:
    return op @ torch.eye(n)


def sym_norm(a: np.ndarray) -> np.ndarray:
    """D^-1/2 A D^-1/2 with D = row sums; zero rows stay zero."""
    d = a.sum(1)
    s = np.where(d > 0, 1.0 / np.sqrt(np.where(d > 0, d, 1.0)), 0.0)
    return s[:, None] * a * s[None, :]


def bipartite(pairs, item_block: np.ndarray | None = None) -> np.ndarray:
    a = np.zeros((U + I, U + I))
    for u, i in pairs:
        a[u, U + i] = a[U + i, u] = 1.0
    if item_block is not None:
        a[U:, U:] = item_block
    return a


def g_dense() -> np.ndarray:
    g = np.zeros((I, I))
    for (r, c), v in G_EDGES.items():
        g[r, c] = v
    return g


def g_sparse() -> torch.Tensor:
    idx = torch.tensor(list(G_EDGES)).T
    return torch.sparse_coo_tensor(idx, torch.tensor(list(G_EDGES.values())), (I, I), check_invariants=True)


def kg_segments(store: GraphStore) -> list[list[tuple[int, int]]]:
    heads, tails, ptr, _ = store.kg_edges()
    assert ptr[0] == 0 and ptr[-1] == len(heads) == len(tails)
    assert bool((ptr[1:] >= ptr[:-1]).all())
    return [sorted(zip(heads[a:b].tolist(), tails[a:b].tolist())) for a, b in zip(ptr[:-1].tolist(), ptr[1:].tolist())]


# -- interaction graph ----------------------------------------------------------------------------
def test_interaction_adj_is_symmetric_normalised_bipartite_graph():
    store = GraphStore(tiny_dataset())
    got = dense(store.interaction_adj(), U + I)
    want = sym_norm(bipartite(TRAIN))
    torch.testing.assert_close(got, torch.tensor(want, dtype=got.dtype))
    # the user-item block holds exactly the train pairs
    nz = {(int(u), int(i)) for u, i in zip(*np.nonzero(got.numpy()[:U, U:]))}
    assert nz == set(TRAIN)


# -- feature graphs -------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 5])
def test_feature_graph_missing_item_isolated_and_k_neighbours(k):
    store = GraphStore(tiny_dataset())
    (s,) = store.feature_knn(k)
    (op,) = store.feature_graphs(k)
    sd = s.to_dense()
    torch.testing.assert_close(dense(op, I), sd)
    missing = MASK.index(False)
    assert not sd[missing].any() and not sd[:, missing].any()
    n_valid = sum(MASK)
    for i in range(I):
        if MASK[i]:
            assert int((sd[i] != 0).sum()) == min(k, n_valid - 1), i
            assert sd[i, i] == 0
    # k=1: the single neighbour is the most cosine-similar valid other item
    if k == 1:
        x = torch.tensor(FEAT)
        cos = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(x, dim=1).T
        for i in range(I):
            if MASK[i]:
                cand = [j for j in range(I) if j != i and MASK[j]]
                best = max(cand, key=lambda j: float(cos[i, j]))
                assert torch.nonzero(sd[i]).flatten().tolist() == [best]
    # values: the Laplacian normalisation of the raw cosine kNN graph
    x = torch.tensor(FEAT, dtype=torch.float64)
    cos = (torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(x, dim=1).T).numpy()
    raw = np.where(sd.numpy() != 0, cos, 0.0)
    torch.testing.assert_close(sd, torch.tensor(sym_norm(raw), dtype=sd.dtype))


# -- knowledge graph ------------------------------------------------------------------------------
def test_kg_edges_add_inverse_relations():
    store = GraphStore(tiny_dataset())
    assert store.n_kg_relations == 2 * R + 1
    heads, tails, ptr, _ = store.kg_edges()
    assert len(heads) == 2 * len(TRIPLES)
    assert len(ptr) == store.n_kg_relations + 1
    segs = kg_segments(store)
    for r in range(R):
        assert segs[r] == sorted((h, t) for h, rr, t in TRIPLES if rr == r)
        assert segs[r + R] == sorted((t, h) for h, rr, t in TRIPLES if rr == r)  # inverse id r + R
    assert segs[2 * R] == []  # no `sim` edges before a self-loop graph is injected


# -- the self-loop door ---------------------------------------------------------------------------
def test_set_item_graph_injects_into_a_s_and_kg_and_none_restores():
    store = GraphStore(tiny_dataset())
    a0 = dense(store.interaction_adj(), U + I)
    s0 = dense(store.feature_graphs(2)[0], I)
    kg0 = kg_segments(store)

    store.set_item_graph(g_sparse())

    # KG: relation 2R ("sim") holds exactly G's edges, the others are untouched
    segs = kg_segments(store)
    assert segs[2 * R] == sorted(G_EDGES)
    assert segs[: 2 * R] == kg0[: 2 * R]
    assert len(store.kg_edges()[0]) == 2 * len(TRIPLES) + len(G_EDGES)

    # A: G is the item-item block (its pattern), then the whole matrix is re-normalised (Eq. 18)
    a = dense(store.interaction_adj(), U + I)
    block = a[U:, U:]
    assert {tuple(e) for e in torch.nonzero(block).tolist()} == set(G_EDGES)
    want = sym_norm(bipartite(TRAIN, g_dense()))
    torch.testing.assert_close(a, torch.tensor(want, dtype=a.dtype))
    assert not torch.equal(a, a0)

    # S^n = S^0 + G^n, both raw cosines, normalised once (SPEC)
    s = dense(store.feature_graphs(2)[0], I)
    raw_s0 = store.feature_knn_raw(2)[0].to_dense().double().numpy()
    torch.testing.assert_close(s0, torch.tensor(sym_norm(raw_s0), dtype=s0.dtype))
    want_s = sym_norm(raw_s0 + g_dense())
    torch.testing.assert_close(s, torch.tensor(want_s, dtype=s.dtype))
    assert s[3].any()  # the item without the modality is reached through G

    # the old build (a_block=normalized): G and S^0 normalised before the sum, the sum again
    store.set_item_graph(g_sparse(), a_block="normalized")
    g_norm = sym_norm(g_dense())
    torch.testing.assert_close(dense(store.interaction_adj(), U + I),
                               torch.tensor(sym_norm(bipartite(TRAIN, g_norm)), dtype=a.dtype))
    torch.testing.assert_close(dense(store.feature_graphs(2)[0], I),
                               torch.tensor(sym_norm(sym_norm(raw_s0) + g_norm), dtype=s.dtype))
    assert kg_segments(store)[2 * R] == sorted(G_EDGES)  # the `sim` triples are G's edges whatever a_block
    with pytest.raises(ValueError, match="a_block"):
        store.set_item_graph(g_sparse(), a_block="nope")

    # None restores the original graphs
    store.set_item_graph(None)
    torch.testing.assert_close(dense(store.interaction_adj(), U + I), a0)
    torch.testing.assert_close(dense(store.feature_graphs(2)[0], I), s0)
    assert kg_segments(store) == kg0


def test_interaction_operator_gradient_with_directed_item_graph():
    """A with a directed G block is not symmetric: the operator's backward must use A^T."""
    store = GraphStore(tiny_dataset())
    store.set_item_graph(g_sparse())
    op = store.interaction_adj()
    a = dense(op, U + I).detach()
    assert not torch.allclose(a, a.T)
    x = torch.randn(U + I, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    w = torch.randn(U + I, 3, generator=torch.Generator().manual_seed(1))
    ((op @ x) * w).sum().backward()
    torch.testing.assert_close(x.grad, a.T @ w)


# -- pruning --------------------------------------------------------------------------------------
def random_dataset(n_users=20, n_items=30, n_pairs=150, n_triples=60) -> RecDataset:
    rng = np.random.default_rng(0)
    keys = rng.choice(n_users * n_items, n_pairs, replace=False)
    train = np.stack([keys // n_items, keys % n_items], 1).astype(np.int64)  # unique pairs
    heads = rng.integers(0, n_items, n_triples)
    tails = rng.integers(n_items, n_items + 10, n_triples)
    kg = np.stack([heads, rng.integers(0, 3, n_triples), tails], 1)
    empty = np.zeros((0, 2), dtype=np.int64)
    return RecDataset(
        name="rand", n_users=n_users, n_items=n_items, train=train, valid=empty, test=empty,
        user_ids=np.arange(n_users).astype(str), item_ids=np.arange(n_items).astype(str),
        kg=kg, n_entities=n_items + 10, n_relations=3,
    )


def kept_pairs(store: GraphStore, ratio: float, prune: bool = True, stream: str = "interaction") -> set[tuple[int, int]]:
    nu, ni = store.n_users, store.n_items
    a = dense(store.interaction_adj(prune=prune, ratio=ratio, stream=stream), nu + ni)
    ui = a[:nu, nu:]
    # the pruned graph stays symmetric: (u, i) and (i, u) are kept or dropped together
    assert torch.equal(ui != 0, a[nu:, :nu].T != 0)
    pairs = {(int(u), int(i)) for u, i in torch.nonzero(ui).tolist()}
    # the values are the normalisation of the kept graph itself
    deg_u = torch.zeros(nu).index_add_(0, torch.tensor([p[0] for p in pairs]), torch.ones(len(pairs)))
    deg_i = torch.zeros(ni).index_add_(0, torch.tensor([p[1] for p in pairs]), torch.ones(len(pairs)))
    for u, i in list(pairs)[:20]:
        assert float(ui[u, i]) == pytest.approx(1.0 / float((deg_u[u] * deg_i[i]).sqrt()), rel=1e-5)
    return pairs


@pytest.mark.parametrize("ratio", [0.5, 0.2])
def test_pruning_keeps_the_right_number_and_resamples_per_epoch(ratio):
    ds = random_dataset()
    n = len(ds.train)
    train = {tuple(p) for p in ds.train.tolist()}
    store = GraphStore(ds, seed=3)

    e0 = kept_pairs(store, ratio)
    assert len(e0) == round((1 - ratio) * n)
    assert e0 <= train
    assert kept_pairs(store, ratio, prune=False) == train
    assert len(store.kg_edges(ratio=ratio)[0]) == 2 * round((1 - ratio) * len(ds.kg))

    store.set_epoch(1)
    e1 = kept_pairs(store, ratio)
    assert len(e1) == len(e0) and e1 != e0  # a new sample per epoch

    store.set_epoch(0)
    assert kept_pairs(store, ratio) == e0  # same (seed, epoch) -> same sample
    other = GraphStore(ds, seed=3)
    other.set_epoch(1)
    assert kept_pairs(other, ratio) == e1
    reseeded = GraphStore(ds, seed=4)
    reseeded.set_epoch(1)
    assert kept_pairs(reseeded, ratio) != e1


def test_no_pruning_when_ratio_zero():
    ds = random_dataset()
    store = GraphStore(ds, seed=3)
    full = kept_pairs(store, 0.0)
    store.set_epoch(5)
    assert kept_pairs(store, 0.0) == full == {tuple(p) for p in ds.train.tolist()}
    assert store.interaction_adj() is store.interaction_adj(ratio=0.0, stream="freedom")  # one whole graph


def test_the_ratio_and_the_sample_stream_come_with_each_call():
    """The model owns Eq. 6's ratio (``model.prune_ratio``): each call prunes A and G_k at its own
    ratio, from a named sample stream, and evaluation (``prune=False``) always sees the whole graphs."""
    ds = random_dataset()
    n, n_kg = len(ds.train), len(ds.kg)
    train = {tuple(p) for p in ds.train.tolist()}
    store = GraphStore(ds, seed=3)
    half = kept_pairs(store, 0.5)
    assert len(half) == round(0.5 * n) and half <= train
    assert len(kept_pairs(store, 0.2)) == round(0.8 * n)  # cached per ratio, not per "pruned or not"
    assert len(store.kg_edges(ratio=0.5)[0]) == 2 * round(0.5 * n_kg)
    assert len(store.kg_edges()[0]) == 2 * n_kg
    assert kept_pairs(store, 0.5, prune=False) == train
    assert len(store.kg_edges(prune=False, ratio=0.5)[0]) == 2 * n_kg
    # another stream: the same ratio, another sample (FREEDOM's graph is not SLIF-MR's)
    freedom = kept_pairs(store, 0.5, stream="freedom")
    assert len(freedom) == len(half) and freedom != half
    assert kept_pairs(GraphStore(ds, seed=3), 0.5, stream="freedom") == freedom
    with pytest.raises(ValueError, match="stream"):
        store.interaction_adj(ratio=0.5, stream="nosuch")
    with pytest.raises(ValueError, match="prune ratio"):
        store.interaction_adj(ratio=1.0)


def test_set_epoch_keeps_graphs_that_do_not_depend_on_pruning():
    ds = tiny_dataset()
    store = GraphStore(ds, seed=3)
    whole, s_graphs = store.interaction_adj(prune=False), store.feature_graphs(2)
    pruned = store.interaction_adj(ratio=0.5)
    store.set_epoch(1)
    assert store.interaction_adj(prune=False) is whole and store.feature_graphs(2) is s_graphs
    assert store.interaction_adj(ratio=0.5) is not pruned


def test_one_knn_search_serves_slifmr_and_freedom_graphs(monkeypatch):
    """The weighted (SLIF-MR) and unweighted (FREEDOM) kNN graphs come from one chunked search
    per modality, and each still equals the graph built from its own search."""
    import slifmr.data.graph_store as gs
    from slifmr.graphs.knn import knn_adjacency, laplacian_normalize

    calls = []
    real = gs.knn_graph
    monkeypatch.setattr(gs, "knn_graph", lambda *a, **k: calls.append(1) or real(*a, **k))
    store = GraphStore(tiny_dataset())
    weighted = store.feature_knn(2)
    frozen = store.frozen_item_graph({m: 1.0 for m in store.modalities}, 2, weighted=False)
    assert len(calls) == len(store.modalities)
    n = store.n_items
    for m, g in zip(store.modalities, weighted):
        ref = laplacian_normalize(knn_adjacency(store.features[m].float(), 2, store.masks[m]))
        assert torch.allclose(g.to_dense(), ref.to_dense())
    ref = sum(laplacian_normalize(knn_adjacency(store.features[m].float(), 2, store.masks[m], weighted=False))
              .to_dense() for m in store.modalities)
    assert torch.allclose(dense(frozen, n), ref)

"""The synthetic generator: exact sizes, determinism, and that each planted signal is really there."""

from __future__ import annotations

import numpy as np
import pytest

from slifmr.data import synthetic
from slifmr.data.dataset import TEST, TRAIN
from slifmr.data.synthetic import SyntheticConfig, amazon_book_scale, generate, latent_factors
from slifmr.errors import DataError


def small(**kw: object) -> SyntheticConfig:
    base: dict[str, object] = dict(
        n_users=400, n_items=300, n_interactions=8000, n_attributes=120, n_relations=6
    )
    base.update(kw)
    return SyntheticConfig(**base)  # type: ignore[arg-type]


def gini(x: np.ndarray) -> float:
    x = np.sort(x.astype(np.float64))
    n = len(x)
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


def check_interactions(ds, cfg: SyntheticConfig) -> None:
    assert len(ds.users) == len(ds.items) == cfg.n_interactions
    keys = ds.users * cfg.n_items + ds.items
    assert len(np.unique(keys)) == cfg.n_interactions
    assert ds.users.min() >= 0 and ds.users.max() < cfg.n_users
    assert ds.items.min() >= 0 and ds.items.max() < cfg.n_items
    assert np.bincount(ds.users, minlength=cfg.n_users).min() >= 3
    assert np.bincount(ds.items, minlength=cfg.n_items).min() >= 1


def test_sizes_ids_and_coverage() -> None:
    cfg = small()
    ds = generate(cfg, name="toy")
    check_interactions(ds, cfg)
    assert ds.name == "toy" and ds.n_users == cfg.n_users and ds.n_items == cfg.n_items
    assert ds.user_ids[0] == "u0" and len(ds.user_ids) == cfg.n_users
    assert ds.item_ids[-1] == f"i{cfg.n_items - 1}" and len(ds.item_ids) == cfg.n_items
    assert ds.relation_names == [f"rel{r}" for r in range(cfg.n_relations)]
    assert ds.n_entities == cfg.n_items + cfg.n_attributes and len(ds.entity_ids) == ds.n_entities
    assert ds.split is None
    for name, d in cfg.feature_dims.items():
        assert ds.features[name].shape == (cfg.n_items, d) and ds.features[name].dtype == np.float32
        assert ds.feature_masks[name].all()


def test_many_chunks_and_gumbel_fallback_keep_exact_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny chunks (many per round) and users asking for almost every item (the Gumbel fallback)."""
    monkeypatch.setattr(synthetic, "_CHUNK_ELEMS", 64 * 7)
    cfg = small(n_users=60, n_items=50, n_interactions=2400, activity_skew=2.0, popularity_skew=2.0)
    ds = generate(cfg)
    check_interactions(ds, cfg)
    assert np.bincount(ds.users).max() >= 45  # some users were filled close to capacity
    # chunks run on a thread pool; each has its own generator, so the thread count changes nothing
    monkeypatch.setattr(synthetic, "_THREADS", 1 if synthetic._THREADS > 1 else 3)
    again = generate(cfg)
    assert np.array_equal(ds.users, again.users) and np.array_equal(ds.items, again.items)
    assert np.array_equal(ds.kg, again.kg)


def test_sampler_matches_softmax_and_respects_exclusions() -> None:
    rng = np.random.default_rng(1)
    logits = np.array([2.0, 0.0, -1.0, 1.0, -3.0, 0.5] * 20, dtype=np.float32)  # 120 cols, 2 blocks
    n_rows = 20000
    A = np.zeros((n_rows, 1), np.float32)
    rows, cols = synthetic._sample_distinct(
        rng, A, np.zeros((1, 120), np.float32), logits, np.ones(n_rows, np.int64), np.zeros(0, np.int64)
    )
    freq = np.bincount(cols, minlength=120) / n_rows
    p = np.exp(logits) / np.exp(logits).sum()
    assert np.abs(freq - p).max() < 0.01
    # near-capacity rows with exclusions: every row gets exactly its count, never an excluded column
    excl = np.arange(50) * 120 + (np.arange(50) % 120)  # row r excludes column r
    counts = np.full(50, 119)
    rows, cols = synthetic._sample_distinct(rng, A[:50], np.zeros((1, 120), np.float32), logits, counts, excl)
    assert np.array_equal(np.bincount(rows, minlength=50), counts)
    assert not np.isin(rows * 120 + cols, excl).any()
    assert len(np.unique(rows * 120 + cols)) == len(rows)


def test_same_seed_same_data_other_seed_differs() -> None:
    a, b, c = generate(small(seed=3)), generate(small(seed=3)), generate(small(seed=4))
    assert np.array_equal(a.users, b.users) and np.array_equal(a.items, b.items)
    assert np.array_equal(a.kg, b.kg)
    assert all(np.array_equal(a.features[k], b.features[k]) for k in a.features)
    assert not (np.array_equal(a.users, c.users) and np.array_equal(a.items, c.items))
    assert not np.array_equal(a.features["visual"], c.features["visual"])


def test_popularity_skew_raises_gini() -> None:
    g = {s: gini(np.bincount(generate(small(popularity_skew=s)).items)) for s in (0.0, 1.0)}
    assert g[1.0] > g[0.0] + 0.1, g


def test_latent_scores_rank_held_out_items() -> None:
    cfg = small(given_split=True)
    ds = generate(cfg)
    lat = latent_factors(cfg)
    assert set(np.unique(ds.split)) == {TRAIN, TEST}
    assert np.bincount(ds.users[ds.split == TRAIN], minlength=cfg.n_users).min() >= 1
    assert 0.15 < (ds.split == TEST).mean() < 0.25
    test = ds.split == TEST
    u, i = ds.users[test], ds.items[test]
    j = np.random.default_rng(0).integers(0, cfg.n_items, len(u))
    pos = np.einsum("nk,nk->n", lat.P[u], lat.Q[i])
    neg = np.einsum("nk,nk->n", lat.P[u], lat.Q[j])
    auc = (pos > neg).mean() + 0.5 * (pos == neg).mean()
    assert auc > 0.7, auc


def ridge_r2(X: np.ndarray, Y: np.ndarray, lam: float = 1.0) -> float:
    X = np.c_[X, np.ones(len(X))].astype(np.float64)
    W = np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), X.T @ Y)
    resid = Y - X @ W
    return float(1 - (resid**2).sum() / ((Y - Y.mean(0)) ** 2).sum())


def test_features_encode_item_factors() -> None:
    cfg = small(n_items=600, n_interactions=9000)
    ds = generate(cfg)
    Q = latent_factors(cfg).Q
    half = cfg.n_items // 2  # fit on one half, score on the other
    for name in cfg.feature_dims:
        F = ds.features[name]
        X = np.c_[F, np.ones(len(F))].astype(np.float64)
        W = np.linalg.solve(X[:half].T @ X[:half] + np.eye(X.shape[1]), X[:half].T @ Q[:half])
        resid = Q[half:] - X[half:] @ W
        r2 = 1 - (resid**2).sum() / ((Q[half:] - Q[half:].mean(0)) ** 2).sum()
        assert r2 > 0.5, (name, r2)
    # the same regression against unrelated factors finds nothing (the check has teeth)
    assert ridge_r2(ds.features["visual"][half:], np.random.default_rng(0).permutation(Q)[half:]) < 0.5


def test_missing_rate_honoured_and_rows_zero() -> None:
    cfg = small(missing_rate={"visual": 0.3})
    ds = generate(cfg)
    vis, mask = ds.features["visual"], ds.feature_masks["visual"]
    assert abs((~mask).mean() - 0.3) < 0.01
    assert not vis[~mask].any()
    assert (np.abs(vis[mask]).sum(axis=1) > 0).all()
    assert ds.feature_masks["text"].all()


def test_kg_schema_and_planted_similarity() -> None:
    cfg = small(n_attributes=600, triples_per_item=10.0)
    ds = generate(cfg)
    kg = ds.kg
    assert kg is not None and kg.shape[1] == 3
    h, r, t = kg.T
    assert h.min() >= 0 and h.max() < cfg.n_items
    assert t.min() >= cfg.n_items and t.max() < ds.n_entities
    assert r.min() >= 0 and r.max() < cfg.n_relations and ds.n_relations == cfg.n_relations
    assert len(np.unique(h * ds.n_entities + t)) == len(kg)
    rel_of_tail = np.zeros(ds.n_entities, np.int64)
    rel_of_tail[t] = r
    assert np.array_equal(rel_of_tail[t], r)  # an attribute value belongs to one relation
    assert 0.8 * cfg.triples_per_item < len(kg) / cfg.n_items < 1.1 * cfg.triples_per_item
    # item pairs sharing attributes have more similar factors than random pairs, the more the closer
    Q = latent_factors(cfg).Q
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    M = np.zeros((cfg.n_items, ds.n_entities))
    M[h, t] = 1.0
    iu = np.triu_indices(cfg.n_items, 1)
    shared, cos = (M @ M.T)[iu], (Qn @ Qn.T)[iu]
    assert cos[shared >= 1].mean() > cos.mean() + 0.08, (cos[shared >= 1].mean(), cos.mean())
    assert cos[shared >= 2].mean() > cos[shared == 1].mean() + 0.05
    assert np.corrcoef(shared, cos)[0, 1] > 0.15


def test_bad_configs_raise() -> None:
    with pytest.raises(DataError, match="n_interactions"):
        generate(small(n_interactions=500))
    with pytest.raises(DataError, match="missing_rate"):
        generate(small(missing_rate={"audio": 0.1}))
    with pytest.raises(DataError, match="n_relations"):
        generate(small(n_attributes=3, n_relations=5))


def test_amazon_book_scale_sizes() -> None:
    cfg = amazon_book_scale(seed=7, given_split=True)
    assert (cfg.n_users, cfg.n_items, cfg.n_interactions, cfg.n_relations) == (70_679, 24_915, 846_000, 39)
    assert cfg.n_items + cfg.n_attributes == 29_700
    assert round(cfg.n_items * cfg.triples_per_item) == 690_000
    assert cfg.feature_dims == {"visual": 4096, "text": 768}
    assert cfg.seed == 7 and cfg.given_split
    with pytest.raises(DataError, match="unknown"):
        amazon_book_scale(n_user=5)

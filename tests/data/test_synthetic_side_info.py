"""The side-information family: informative side information carries the item factors, noise
(same sizes) carries nothing; the family's members differ only in interactions per user; the
DataModule through Hydra (``dataset=synthetic dataset.per_user=.. dataset.side=..``)."""

from __future__ import annotations

import numpy as np
import pytest

from slifmr.data.synthetic import generate, latent_factors, side_info_config
from slifmr.errors import DataError
from hydra_compose import make_cfg


def ridge_r2(X: np.ndarray, Y: np.ndarray) -> float:
    """Held-out R^2 of a ridge regression of Y on X (fit on one half, scored on the other)."""
    half = len(X) // 2
    X = np.c_[X, np.ones(len(X))].astype(np.float64)
    W = np.linalg.solve(X[:half].T @ X[:half] + np.eye(X.shape[1]), X[:half].T @ Y[:half])
    resid = Y[half:] - X[half:] @ W
    return float(1 - (resid**2).sum() / ((Y[half:] - Y[half:].mean(0)) ** 2).sum())


def kg_factor_corr(ds, Q: np.ndarray) -> float:
    """Correlation over item pairs of (attributes shared) with (cosine of item factors)."""
    h, _, t = ds.kg.T
    M = np.zeros((ds.n_items, ds.n_entities))
    M[h, t] = 1.0
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    iu = np.triu_indices(ds.n_items, 1)
    return float(np.corrcoef((M @ M.T)[iu], (Qn @ Qn.T)[iu])[0, 1])


def test_noise_side_has_the_same_sizes_and_no_information():
    kw = dict(n_users=300, n_items=200)
    info = side_info_config(10, "informative", **kw)
    noise = side_info_config(10, "noise", **kw)
    a, b = generate(info), generate(noise)
    Q = latent_factors(info).Q
    assert np.array_equal(latent_factors(noise).Q, Q)  # the same planted items and users ...
    assert np.array_equal(a.users, b.users) and np.array_equal(a.items, b.items)  # ... and interactions
    assert abs(len(a.kg) - len(b.kg)) < 0.05 * len(a.kg) and a.n_entities == b.n_entities
    for m in a.features:
        assert a.features[m].shape == b.features[m].shape
        assert ridge_r2(a.features[m], Q) > 0.5
        assert ridge_r2(b.features[m], Q) < 0.1
        # noise features are not white noise: they have the informative ones' low-rank structure
        assert np.linalg.svd(b.features[m], compute_uv=False)[:16].sum() > 0.5 * np.linalg.svd(
            b.features[m], compute_uv=False).sum()
    assert kg_factor_corr(a, Q) > 0.15
    assert abs(kg_factor_corr(b, Q)) < 0.05


def test_family_members_differ_only_in_interactions_per_user():
    five, thirty = side_info_config(5, n_users=300, n_items=200), side_info_config(30, n_users=300, n_items=200)
    a, b = generate(five), generate(thirty)
    assert len(a.users) == 5 * 300 and len(b.users) == 30 * 300
    np.testing.assert_array_equal(a.kg, b.kg)
    for m in a.features:
        np.testing.assert_array_equal(a.features[m], b.features[m])
    counts = np.bincount(b.users, minlength=300)
    assert counts.min() >= 3 and abs(counts.mean() - 30) < 1e-9 and counts.std() < 10  # no activity skew


def test_bad_members_are_rejected():
    with pytest.raises(DataError, match="side"):
        side_info_config(5, "random")
    with pytest.raises(DataError, match="per_user"):
        side_info_config(2)
    with pytest.raises(DataError, match="unknown SyntheticConfig field"):
        side_info_config(5, colour="red")


def test_hydra_dataset_config(tmp_path):
    import hydra

    cfg = make_cfg(tmp_path, ["dataset=synthetic", "dataset.per_user=5", "dataset.side=noise",
                              "dataset.n_users=120", "dataset.n_items=60"])
    assert cfg.dataset.name == "synth-u5-noise"
    dm = hydra.utils.instantiate(cfg.dataset, _convert_="all")
    dm.setup("fit")
    d = dm.data
    assert d.name == "synth-u5-noise" and d.n_users == 120 and d.n_items == 60
    assert len(d.train) + len(d.valid) + len(d.test) == 5 * 120
    assert len(np.unique(d.test[:, 0])) == 120  # every user has a test item (>= 3 interactions each)
    assert dm.meta["features"] == {"text": 32, "visual": 64}

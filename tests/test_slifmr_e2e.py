"""SLIF-MR end to end through Hydra compose on ml-100k-kg-tiny: the full model, every Table III
ablation, the Fig. 5 fusions and L=1 train and test; layer-count and noise wiring."""

from __future__ import annotations

import math

import hydra
import numpy as np
import pytest
import torch

from slifmr.config import register_resolvers
from slifmr.data.graph_store import GraphStore
from slifmr.train import train
from hydra_compose import make_cfg

register_resolvers()

D = 64  # conf/model/slifmr.yaml embedding_dim






def tiny(shared_data, *extra: str) -> list[str]:
    return ["dataset=ml-100k-kg-tiny", f"paths.data_dir={shared_data}", "trainer.max_epochs=2",
            "callbacks.progress_bar=null", "trainer.enable_progress_bar=false", *extra]


@pytest.fixture
def item_graph_pushes(monkeypatch):
    """Every graph handed to GraphStore.set_item_graph (None included), in order."""
    pushes: list = []
    original = GraphStore.set_item_graph

    def record(self, graph, a_block="cosine"):
        pushes.append(graph)
        return original(self, graph, a_block)

    monkeypatch.setattr(GraphStore, "set_item_graph", record)
    return pushes


# (overrides, views kept, fusion, self-loop on, consistency on)
CASES = {
    "full": ([], ("b", "m", "k"), "ailf", True, True),
    "wo_kg": (["model.use_kg=false"], ("b", "m"), "ailf", True, True),
    "wo_mm": (["model.use_mm=false"], ("b", "k"), "ailf", True, True),
    "wo_kg_mm": (["model.use_kg=false", "model.use_mm=false"], ("b",), "ailf", True, True),
    "wo_sge": (["model.self_loop.enabled=false"], ("b", "m", "k"), "ailf", False, True),
    "wo_cl": (["model.consistency.enabled=false"], ("b", "m", "k"), "ailf", True, False),
    "concat": (["model.fusion=concat"], ("b", "m", "k"), "concat", True, True),
    "sum": (["model.fusion=sum"], ("b", "m", "k"), "sum", True, True),
    "attention": (["model.fusion=attention"], ("b", "m", "k"), "attention", True, True),
    "L1": (["model.L=1"], ("b", "m", "k"), "ailf", True, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_slifmr_variant_trains_and_tests(tmp_path, shared_data, item_graph_pushes, case):
    overrides, views, fusion, sge, cl = CASES[case]
    metrics = train(make_cfg(tmp_path, tiny(shared_data, *overrides)))

    for k in (10, 20, 50):
        for m in ("recall", "ndcg", "precision"):
            v = metrics[f"test/{m}@{k}"]
            assert math.isfinite(v) and 0.0 <= v <= 1.0, (m, k, v)
    assert metrics["test/recall@50"] >= metrics["test/recall@10"]
    assert math.isfinite(metrics["train/loss"])

    # the ablation is real: the checkpoint holds exactly the encoders and fusion asked for
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    state, hp = ckpt["state_dict"], ckpt["hyper_parameters"]
    assert any(k.startswith("kg_encoder.") for k in state) == ("k" in views)
    assert any(k.startswith("feature_encoder.") for k in state) == ("m" in views)
    assert hp["fusion"] == fusion
    n_views = len(views)
    fusion_shapes = {k: tuple(v.shape) for k, v in state.items() if k.startswith("fusion.")}
    expected = {
        "ailf": {"fusion.proj.weight": (n_views, n_views * D), "fusion.proj.bias": (n_views,)},
        "concat": {"fusion.proj.weight": (D, n_views * D), "fusion.proj.bias": (D,)},
        "sum": {},
        "attention": {"fusion.logits": (n_views,)},
    }[fusion]
    assert fusion_shapes == expected
    if case == "L1":
        assert hp["L"] == 1

    # w/o SGE: the store never gets an item graph; with it, it does
    got_graph = any(g is not None for g in item_graph_pushes)
    assert got_graph == sge
    assert ("self_loop/degree_gini" in metrics) == sge
    # w/o CL: no consistency losses are computed (nor logged)
    assert ("train/inter" in metrics) == cl
    assert ("train/intra" in metrics) == cl
    assert "train/bpr" in metrics


def build_model(tmp_path, shared_data, *overrides):
    cfg = make_cfg(tmp_path, tiny(shared_data, *overrides))
    dm = hydra.utils.instantiate(cfg.dataset, _convert_="all")
    dm.setup("fit")
    return hydra.utils.instantiate(cfg.model, meta=dm.meta, _convert_="all")


@pytest.mark.parametrize("overrides, layers", [
    ([], (2, 2, 2)),
    (["model.L=3"], (3, 3, 3)),
    (["model.L=3", "model.L_k=1"], (3, 3, 1)),
    (["model.L=1", "model.L_b=4", "model.L_m=2"], (4, 2, 1)),
])
def test_L_sets_every_layer_count_unless_given(tmp_path, shared_data, overrides, layers):
    model = build_model(tmp_path, shared_data, *overrides)
    assert (model.L_b, model.L_m, model.L_k) == layers
    assert model.feature_encoder.n_layers == layers[1]
    assert model.kg_encoder.n_layers == layers[2]


def pairs(a: np.ndarray) -> set[tuple[int, int]]:
    return {tuple(p) for p in a.tolist()}


def test_interaction_noise_changes_train_never_test(tmp_path, shared_data):
    def data(*overrides):
        cfg = make_cfg(tmp_path, tiny(shared_data, *overrides))
        dm = hydra.utils.instantiate(cfg.dataset, _convert_="all")
        dm.setup("fit")
        return dm.data

    clean = data()
    noisy = data("noise.interaction=0.2", "noise.seed=1")
    other_seed = data("noise.interaction=0.2", "noise.seed=2")

    np.testing.assert_array_equal(noisy.test, clean.test)
    np.testing.assert_array_equal(other_seed.test, clean.test)
    assert len(noisy.train) == len(clean.train)
    np.testing.assert_array_equal(noisy.train[:, 0], clean.train[:, 0])  # a row keeps its user
    changed = pairs(noisy.train) - pairs(clean.train)
    assert len(changed) == int((noisy.train[:, 1] != clean.train[:, 1]).sum())
    # round(0.2 n) rows are picked; a picked row of a user who has every item keeps it (tiny's
    # user 0 has all 200 items), so between round(0.2 n) - those users' rows and round(0.2 n)
    known = np.concatenate([clean.train, clean.valid, clean.test])
    full_users = np.flatnonzero(np.bincount(known[:, 0], minlength=clean.n_users) >= clean.n_items)
    k = round(0.2 * len(clean.train))
    assert k - np.isin(clean.train[:, 0], full_users).sum() <= len(changed) <= k
    assert len(changed) > 0.5 * k
    assert not {u for u, _ in changed} & set(full_users.tolist())
    # replaced by items the user never interacted with, in any split
    assert not changed & (pairs(clean.train) | pairs(clean.valid) | pairs(clean.test))
    assert pairs(noisy.valid) != pairs(clean.valid)
    # the noise seed, not the model seed, decides which rows
    assert pairs(other_seed.train) != pairs(noisy.train)
    again = data("noise.interaction=0.2", "noise.seed=1")
    np.testing.assert_array_equal(again.train, noisy.train)

"""End to end through Hydra compose: the configs instantiate and a model trains and tests."""

from __future__ import annotations

import math

import pytest

from slifmr.config import register_resolvers
from slifmr.train import train
from hydra_compose import make_cfg

register_resolvers()




@pytest.mark.parametrize("model", ["pop", "mf", "lightgcn"])
def test_models_train_and_test_on_tiny(tmp_path, shared_data, model):
    cfg = make_cfg(tmp_path, [
        "dataset=ml-100k-kg-tiny", f"paths.data_dir={shared_data}", f"model={model}",
        "trainer.max_epochs=2", "callbacks.progress_bar=null",
    ])
    metrics = train(cfg)
    for k in (10, 20, 50):
        for m in ("recall", "ndcg", "precision"):
            v = metrics[f"test/{m}@{k}"]
            assert 0.0 <= v <= 1.0 and not math.isnan(v)
    assert metrics["test/recall@50"] >= metrics["test/recall@10"]
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").exists() or model == "pop"


def test_misspelt_key_is_an_error(tmp_path):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        make_cfg(tmp_path, ["model.n_layerz=2"])


@pytest.mark.parametrize("override", [
    "consistency.beta=0.1", "model.consistency.beta=0.1", "self_loop.top_n=5", "model.self_loop.top_n=5",
    "callbacks.self_loop.top_n=5", "dataset.knn_k=5", "dataset.prune_ratio=0.5",
])
def test_a_knob_of_another_model_is_an_error(tmp_path, override):
    """SLIF-MR's knobs live under its model config: with LightGCN they exist nowhere, so an override
    naming them fails at composition instead of being silently ignored."""
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        make_cfg(tmp_path, ["model=lightgcn", override])


def test_slifmr_knobs_live_under_its_model(tmp_path):
    cfg = make_cfg(tmp_path, ["model=slifmr", "model.consistency.beta=0.1", "model.self_loop.top_n=5",
                              "model.knn_k=7", "model.prune_ratio=0.3"])
    assert cfg.model.consistency.beta == 0.1 and cfg.model.self_loop.top_n == 5
    assert cfg.model.knn_k == 7 and cfg.model.prune_ratio == 0.3
    assert "consistency" not in cfg and "self_loop" not in cfg
    assert set(cfg.callbacks.self_loop) == {"_target_", "chunk_size"}


def test_unknown_model_names_the_choices(tmp_path):
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match="nosuchmodel"):
        make_cfg(tmp_path, ["model=nosuchmodel"])


def test_wandb_offline_run_is_finished(tmp_path, shared_data):
    wandb = pytest.importorskip("wandb")
    cfg = make_cfg(tmp_path, [
        "dataset=ml-100k-kg-tiny", f"paths.data_dir={shared_data}", "model=mf", "logger=wandb",
        "trainer.max_epochs=1", "callbacks.progress_bar=null",
    ])
    train(cfg)
    assert wandb.run is None  # finished at job end
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1


def test_embedded_default_dataset_loads(tmp_path):
    cfg = make_cfg(tmp_path, [])
    assert cfg.model._target_.endswith("SLIFMR") and cfg.dataset.name == "movietweetings-10core"
    import hydra

    dm = hydra.utils.instantiate(cfg.dataset, _convert_="all")
    dm.setup()
    s = dm.data.summary()
    # the dataset README: 2,059 users, 1,099 items, 44,613 interactions, already 10-core
    assert (s["users"], s["items"], s["interactions"]) == (2059, 1099, 44613)
    assert abs(s["test"] / s["interactions"] - 0.1) < 0.01 and abs(s["valid"] / s["interactions"] - 0.1) < 0.01
    assert s["triples"] == 4201 and set(dm.data.features) == {"text", "genre"}


@pytest.mark.parametrize("model", ["lightgcn", "slifmr", "kgat"])
def test_evaluate_reproduces_the_test_metrics(tmp_path, shared_data, model):
    """The checkpoint names its model class, so evaluate needs no `model=` (the eval config's
    default model is slifmr: a lightgcn or kgat checkpoint must still load as itself)."""
    from slifmr.evaluate import evaluate

    common = ["dataset=ml-100k-kg-tiny", f"paths.data_dir={shared_data}"]
    cfg = make_cfg(tmp_path, common + [f"model={model}", "trainer.max_epochs=3", "callbacks.progress_bar=null"])
    trained = train(cfg)
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    ecfg = make_cfg(tmp_path / "e", common + [f"ckpt_path={ckpt}"], config_name="eval")
    again = evaluate(ecfg)
    for k in ("test/recall@20", "test/ndcg@20", "test/precision@20"):
        assert again[k] == pytest.approx(trained[k], abs=1e-9)

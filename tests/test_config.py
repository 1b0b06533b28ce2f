"""paths.cache_dir: $SLIFMR_CACHE_DIR, else beside the data directory, absolute."""

from __future__ import annotations

from pathlib import Path

from hydra_compose import make_cfg
from slifmr.config import cache_dir


def test_cache_dir_is_beside_the_data_or_the_environments(tmp_path, monkeypatch):
    monkeypatch.delenv("SLIFMR_CACHE_DIR", raising=False)
    assert cache_dir(str(tmp_path / "data")) == str(tmp_path / ".cache" / "slifmr")
    monkeypatch.chdir(tmp_path)
    assert Path(cache_dir("data")).is_absolute()  # the same whatever directory a run starts in
    assert cache_dir("data") == str(tmp_path / ".cache" / "slifmr")
    monkeypatch.setenv("SLIFMR_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert cache_dir(str(tmp_path / "data")) == str(tmp_path / "elsewhere")


def test_composed_cache_dir_follows_paths_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("SLIFMR_CACHE_DIR", raising=False)
    cfg = make_cfg(tmp_path, [f"paths.data_dir={tmp_path / 'd'}"])
    assert cfg.paths.cache_dir == str(tmp_path / ".cache" / "slifmr")
    assert cfg.dataset.cache_dir == cfg.paths.cache_dir


def test_an_old_run_config_is_read_in_todays_layout(tmp_path):
    """A run recorded before the knobs moved under the model (issue 11) loads with today's classes."""
    from omegaconf import OmegaConf

    from slifmr.config import upgrade_config

    now = make_cfg(tmp_path, ["model=slifmr", "model.self_loop.top_n=5", "model.consistency.beta=0.3"])
    plain = lambda c: OmegaConf.to_container(OmegaConf.masked_copy(c, [k for k in c if k != "hydra"]))  # noqa: E731
    assert plain(upgrade_config(now)) == plain(now)  # today's layout: unchanged
    old = OmegaConf.create({
        "model": {"_target_": "slifmr.models.slifmr.SLIFMR", "prune_ratio": None, "consistency": "${consistency}"},
        "consistency": {"enabled": False, "beta": 0.3},
        "self_loop": {"enabled": True, "top_n": 5},
        "dataset": {"_target_": "slifmr.data.datamodule.RecDataModule", "knn_k": 7, "prune_ratio": 0.5},
        "callbacks": {"self_loop": {"_target_": "slifmr.callbacks.self_loop.SelfLoopCallback", "top_n": 5,
                                    "enabled": "${self_loop.enabled}", "chunk_size": 64}},
    })
    new = upgrade_config(old)
    assert OmegaConf.to_container(new, resolve=True) == {
        "model": {"_target_": "slifmr.models.slifmr.SLIFMR", "prune_ratio": 0.5, "knn_k": 7,
                  "consistency": {"enabled": False, "beta": 0.3},
                  # no a_block: a run before issue 14, which placed G^n the one way now called normalized
                  "self_loop": {"enabled": True, "top_n": 5, "a_block": "normalized"}},
        "dataset": {"_target_": "slifmr.data.datamodule.RecDataModule"},
        "callbacks": {"self_loop": {"_target_": "slifmr.callbacks.self_loop.SelfLoopCallback", "chunk_size": 64}},
    }
    assert "consistency" in old and old.dataset.knn_k == 7  # a copy: the input is left alone


def test_an_old_checkpoints_hyper_parameters_take_the_runs_values():
    """SLIF-MR's ``prune_ratio: null`` (before issue 11) meant the dataset's ratio: it becomes the
    run config's ``dataset.prune_ratio``, else 0.0 (every dataset's default then); the knobs that
    lived outside the model come from the run config; a today's checkpoint is left alone."""
    from omegaconf import OmegaConf

    from slifmr.config import upgrade_hparams

    slif = "slifmr.models.slifmr.SLIFMR"
    old_cfg = {"model": {"_target_": slif, "prune_ratio": None},
               "dataset": {"knn_k": 7, "prune_ratio": 0.5},
               "self_loop": {"enabled": False, "top_n": 5, "a_block": "binary"}}
    hp = {"embedding_dim": 8, "prune_ratio": None}
    assert upgrade_hparams(hp, old_cfg) == {"embedding_dim": 8, "prune_ratio": 0.5, "knn_k": 7,
                                            "self_loop": {"enabled": False, "top_n": 5, "a_block": "binary"}}
    assert upgrade_hparams(hp, OmegaConf.create(old_cfg))["prune_ratio"] == 0.5  # DictConfig too
    assert hp == {"embedding_dim": 8, "prune_ratio": None}  # a copy
    no_ratio = {"model": {"_target_": slif, "prune_ratio": None}, "dataset": {}}
    assert upgrade_hparams(hp, no_ratio)["prune_ratio"] == 0.0
    assert upgrade_hparams(hp, None) == {"embedding_dim": 8, "prune_ratio": 0.0}
    today = {"embedding_dim": 8, "prune_ratio": 0.2, "knn_k": 3, "self_loop": {"top_n": 4}}
    assert upgrade_hparams(today, old_cfg) == today  # keys the checkpoint has are its own
    freedom = {"model": {"_target_": "slifmr.models.freedom.FREEDOM", "knn_k": 4}}
    assert upgrade_hparams({"prune_ratio": 0.8}, freedom) == {"prune_ratio": 0.8}  # another model: untouched

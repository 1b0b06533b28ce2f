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
                  "consistency": {"enabled": False, "beta": 0.3}, "self_loop": {"enabled": True, "top_n": 5}},
        "dataset": {"_target_": "slifmr.data.datamodule.RecDataModule"},
        "callbacks": {"self_loop": {"_target_": "slifmr.callbacks.self_loop.SelfLoopCallback", "chunk_size": 64}},
    }
    assert "consistency" in old and old.dataset.knn_k == 7  # a copy: the input is left alone

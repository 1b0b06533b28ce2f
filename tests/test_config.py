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

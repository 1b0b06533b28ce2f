"""Compose the package's Hydra config in tests, as `python -m slifmr.train` would."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from slifmr.config import register_resolvers

register_resolvers()


def make_cfg(tmp_path: Path, overrides: list[str], config_name: str = "train"):
    """The composed config with the run directory under ``tmp_path / 'run'``."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="slifmr.conf", version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.hydra.runtime.output_dir = str(tmp_path / "run")
    return cfg

"""OmegaConf resolvers used by conf/ (registered once, before Hydra composes)."""

from __future__ import annotations

from omegaconf import OmegaConf

from slifmr.datasets import embedded_path


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("slifmr.embedded"):
        OmegaConf.register_new_resolver("slifmr.embedded", embedded_path)

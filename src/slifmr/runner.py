"""Small pieces the entry points share: instantiate callbacks/loggers, finish W&B, print."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def instantiate_callbacks(cfg: DictConfig | None) -> list:
    if not cfg:
        return []
    return [hydra.utils.instantiate(c) for c in cfg.values() if c is not None and "_target_" in c]


def instantiate_loggers(cfg: DictConfig | None, full_cfg: DictConfig) -> list:
    """Loggers from config; each gets the composed config as hyper-parameters."""
    if not cfg:
        return []
    loggers = [hydra.utils.instantiate(c) for c in cfg.values() if c is not None and "_target_" in c]
    plain = OmegaConf.masked_copy(full_cfg, [k for k in full_cfg if k != "hydra"])  # hydra's node is runtime-only
    hparams = OmegaConf.to_container(plain, resolve=True)
    for lg in loggers:
        lg.log_hyperparams(hparams)
    return loggers


def finish_loggers(loggers: list) -> None:
    """Close W&B runs at job end, also when the job failed: one W&B run per multirun job."""
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger":
            import wandb

            if wandb.run is not None:
                wandb.finish()


def print_metrics(metrics: dict[str, float], prefix: str) -> None:
    rows = sorted((k, v) for k, v in metrics.items() if k.startswith(prefix))
    if not rows:
        return
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v:.4f}" for k, v in rows))

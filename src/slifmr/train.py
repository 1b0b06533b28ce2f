"""`python -m slifmr.train [overrides]`: compose the config, instantiate, fit, test.

Everything interesting lives in the classes the config names; this file only wires them.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig

from slifmr.checkpoints import AtomicCheckpointIO
from slifmr.config import register_resolvers
from slifmr.report.records import save_run_record
from slifmr.resume import ConfigInCheckpoint, plain_config, resolve_ckpt
from slifmr.runner import finish_loggers, instantiate_callbacks, instantiate_loggers, print_metrics, report_errors
from slifmr.validate import check_config, check_eval

log = logging.getLogger(__name__)
register_resolvers()


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit on train (early stopping on valid), then test once with the best checkpoint;
    the run's result record goes to its directory (slifmr.report reads it)."""
    started = time.perf_counter()
    check_config(cfg)  # wrong types name their key before anything is built
    ckpt_path = resolve_ckpt(cfg) if cfg.get("train", True) else None
    pl.seed_everything(cfg.seed, workers=True)
    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.dataset, _convert_="all")
    datamodule.setup("fit")
    data_seconds = time.perf_counter() - started  # before the Trainer exists: timed here
    model: pl.LightningModule = hydra.utils.instantiate(cfg.model, meta=datamodule.meta, _convert_="all")
    val_keys = [f"val/{k}" for k in model.val_metrics.keys()] if hasattr(model, "val_metrics") else None
    check_eval(cfg.eval.topk, cfg.eval.get("monitor"), datamodule.meta["n_items"], val_keys)
    callbacks = instantiate_callbacks(cfg.get("callbacks")) + [ConfigInCheckpoint(plain_config(cfg))]
    loggers = instantiate_loggers(cfg.get("logger"), cfg)
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers,
                                                  plugins=[AtomicCheckpointIO()])
    try:
        if cfg.get("train", True):
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if cfg.get("test", True):
            ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            if not ckpt:
                log.warning("no best checkpoint was saved; testing the current weights")
            results = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt or None, verbose=False,
                                   weights_only=True)
            metrics.update({k: float(v) for k, v in results[0].items()})
            print_metrics(metrics, prefix="test/")
        save_run_record(cfg, trainer, metrics, started=started, data_seconds=data_seconds)
        return metrics
    finally:
        finish_loggers(loggers)


@hydra.main(version_base="1.3", config_path="pkg://slifmr.conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    if cfg.get("dry_run"):  # list a sweep's jobs: no data, no model (slifmr.sweeps)
        from slifmr.sweeps import describe_job

        print(describe_job(cfg), flush=True)
        return None
    with report_errors():
        metrics = train(cfg)
    monitor = cfg.eval.get("monitor")
    return metrics.get(monitor) if monitor else None  # for Hydra sweepers that optimise


if __name__ == "__main__":
    main()

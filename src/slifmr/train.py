"""`python -m slifmr.train [overrides]`: compose the config, instantiate, fit, test.

Everything interesting lives in the classes the config names; this file only wires them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig

from slifmr.checkpoints import AtomicCheckpointIO
from slifmr.callbacks.run_record import RunRecordCallback
from slifmr.completed import completed_metrics
from slifmr.config import hydra_parts, plain_config, register_resolvers
from slifmr.resume import ConfigInCheckpoint, resolve_ckpt
from slifmr.runner import (closing_block, finish_loggers, instantiate_callbacks, instantiate_loggers, job_label,
                           log_interval, report_errors, summarize_best, train_batches_per_epoch)
from slifmr.tune.points import apply_tuned
from slifmr.validate import check_config, check_eval
from slifmr.threads import size_job_threads
from slifmr.warnings_filter import quiet_third_party

log = logging.getLogger("slifmr.train")  # also when run as __main__
register_resolvers()


def train(cfg: DictConfig, extra_callbacks: Sequence[pl.Callback] = ()) -> dict[str, Any]:
    """Fit on train (early stopping on valid), then test once with the best checkpoint;
    the run's result record goes to its directory (slifmr.report reads it). With ``tuned=<set>``
    the job's model runs at its tuned point (slifmr.tune.points). ``extra_callbacks``: callbacks
    that are objects, not config (the tuning pruner, which holds its Optuna trial)."""
    started = time.perf_counter()
    quiet_third_party()
    size_job_threads()  # a parallel sweep's job: its share of the cores
    label = job_label()
    if label:
        log.info("%s", label)
    if cfg.get("skip_completed"):  # a killed grid run again: finished jobs are read, not re-run
        done = completed_metrics(Path(str(cfg.paths.output_dir)), hydra_parts(cfg)[0], bool(cfg.get("test", True)))
        if done is not None:
            log.info("skip_completed: %s already holds a completed run of these overrides; not run again",
                     cfg.paths.output_dir)
            return done
    cfg = apply_tuned(cfg)  # first, so the point's values are type-checked with the rest
    check_config(cfg)  # wrong types name their key before anything is built
    ckpt_path = resolve_ckpt(cfg) if cfg.get("train", True) else None
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.dataset, _convert_="all")
    datamodule.setup("fit")
    data_seconds = time.perf_counter() - started  # before the Trainer exists: timed here
    model: pl.LightningModule = hydra.utils.instantiate(cfg.model, meta=datamodule.meta, _convert_="all")
    val_keys = [f"val/{k}" for k in model.val_metrics.keys()] if hasattr(model, "val_metrics") else None
    check_eval(cfg.eval.topk, cfg.eval.get("monitor"), datamodule.meta["n_items"], val_keys)
    callbacks = instantiate_callbacks(cfg.get("callbacks"), progress_bar=cfg.trainer.get("enable_progress_bar", True))
    callbacks.append(ConfigInCheckpoint(plain_config(cfg)))
    callbacks += list(extra_callbacks)
    recorder = next((c for c in callbacks if isinstance(c, RunRecordCallback)), None)
    if recorder is not None:  # it writes the run's record when the test ends
        recorder.bind(cfg, started=started, data_seconds=data_seconds)
    loggers = instantiate_loggers(cfg.get("logger"), cfg)
    batches = train_batches_per_epoch(len(datamodule.data.train), datamodule.batch_size,
                                      cfg.trainer.get("limit_train_batches"))
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers, plugins=[AtomicCheckpointIO()],
        log_every_n_steps=log_interval(cfg.trainer.get("log_every_n_steps", 50), batches))
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
        elif recorder is not None:  # not tested: the record of the fit
            recorder.write(trainer)
        record = recorder.written if recorder is not None else None
        summarize_best(loggers, record)
        if trainer.is_global_zero:  # the console and train.log end with where everything is
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            log.info("%s", closing_block(cfg.paths.output_dir, metrics, time.perf_counter() - started, record,
                                         best or None, label))
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


def cli() -> None:
    """``python -m slifmr.train`` / ``slifmr-train``: Hydra's main, plus "did you mean" on a misspelt key."""
    from slifmr.overrides import run_cli

    run_cli(main, "train")


if __name__ == "__main__":
    cli()

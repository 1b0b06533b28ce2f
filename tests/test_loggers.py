"""Loggers: TensorBoard works from the `tensorboard` extra; W&B gets one copy of the config, the
best epoch's validation metrics in its summary, and a run name without paths or logger keys."""

from __future__ import annotations

import json

import pytest
from pytorch_lightning.loggers import Logger

from hydra_compose import make_cfg
from slifmr.config import name_from_overrides


def _common(shared_data):
    return ["dataset=ml-100k-kg-tiny", f"paths.data_dir={shared_data}", "model=mf", "callbacks.progress_bar=null"]


def test_tensorboard_logger_writes_events(tmp_path, shared_data):
    pytest.importorskip("tensorboard")
    from slifmr.train import train

    train(make_cfg(tmp_path, _common(shared_data) + ["logger=tensorboard", "trainer.max_epochs=1"]))
    assert list((tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*"))


class RecordingLogger(Logger):
    """Keeps what Lightning and the runner hand a logger."""

    calls: list = []

    @property
    def name(self):
        return "rec"

    @property
    def version(self):
        return 0

    def log_hyperparams(self, params, *args, **kwargs):
        RecordingLogger.calls.append(dict(params))

    def log_metrics(self, metrics, step=None):
        pass


class WandbLogger:  # the runner recognises W&B by class name; this one records the summary
    def __init__(self):
        self.experiment = type("Run", (), {"summary": {}})()


def test_loggers_get_one_config_and_wandb_the_best_epoch(tmp_path, shared_data):
    from slifmr.runner import summarize_best
    from slifmr.train import train

    RecordingLogger.calls.clear()
    train(make_cfg(tmp_path, _common(shared_data) + ["trainer.max_epochs=3", "logger=csv",
                                                     "+logger.rec._target_=test_loggers.RecordingLogger"]))
    assert len(RecordingLogger.calls) == 1  # the composed config only, not the model's flattened copy too
    assert "model" in RecordingLogger.calls[0] and "embedding_dim" not in RecordingLogger.calls[0]
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    wb = WandbLogger()
    summarize_best([wb], tmp_path / "run" / "record.json")
    assert wb.experiment.summary["best_epoch"] == record["best_epoch"]
    best = next(h for h in record["val_history"] if h["epoch"] == record["best_epoch"])
    assert wb.experiment.summary["val/recall@20"] == best["recall@20"] == record["val"]["recall@20"]


def test_run_names_leave_out_paths_and_logger_keys():
    assert name_from_overrides(["model=mf", "paths.data_dir=/x/y", "logger=wandb", "seed=2",
                                "+trainer.limit_train_batches=2", "trainer.enable_progress_bar=false",
                                "hydra.run.dir=/tmp/r", "dry_run=true"]) == "model=mf,seed=2,trainer.limit_train_batches=2"
    assert name_from_overrides(["paths.log_dir=/o"]) is None

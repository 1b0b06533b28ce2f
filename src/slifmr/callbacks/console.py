"""What a run shows while it trains: a progress bar with the validation score, and one line per
validation epoch in the job's log (``train.log``), so the log holds the metrics too."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar

log = logging.getLogger("slifmr.train")


class ProgressBar(TQDMProgressBar):
    """Lightning's bar without its ``v_num`` (the logger's version, always 0 in a Hydra run dir),
    with the last training step's loss (``RecModel.last_step_loss``), read only when the bar
    refreshes (every ``refresh_rate`` steps): the one host read of a training epoch."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        loss = getattr(pl_module, "last_step_loss", None)
        if loss is not None:
            items = {"loss": float(loss), **items}
        return items


class EpochLog(pl.Callback):
    """One log line per validation: the epoch, the monitored metric and the best so far."""

    def __init__(self, monitor: str = "val/recall@20", mode: str = "max") -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got '{mode}'")
        self.monitor, self.mode = monitor, mode
        self.best: tuple[int, float] | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        value = metrics.get(self.monitor)
        if value is None:
            return
        epoch = int(trainer.current_epoch)
        better = self.best is None or (value > self.best[1] if self.mode == "max" else value < self.best[1])
        if better:
            self.best = (epoch, value)
        args = ("epoch %d  %s %.4f  (best %.4f at epoch %d)", epoch, self.monitor, value, self.best[1], self.best[0])
        if not log.isEnabledFor(logging.INFO):
            return
        if trainer.progress_bar_callback is None:
            log.info(*args)
            return
        # the bar shows the score already: the line goes to the log files only, not through the bar
        record = log.makeRecord(log.name, logging.INFO, __file__, 0, args[0], args[1:], None)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
                handler.handle(record)

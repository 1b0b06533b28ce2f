"""Report each epoch's validation score to an Optuna trial and stop the run when the pruner says so.

Unlike optuna-integration's callback this one does not raise inside Lightning: it asks the
Trainer to stop, so the run ends normally (best checkpoint, result record) and ``slifmr.tune``
marks the trial pruned afterwards (``pruned_epoch``). Optuna is imported by the caller only.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl


class TrialPruningCallback(pl.Callback):
    """``trial.report(value, epoch)`` after every validation; ``trial.should_prune()`` stops fit."""

    def __init__(self, trial: Any, monitor: str = "val/recall@20") -> None:
        self.trial, self.monitor = trial, monitor
        self.pruned_epoch: int | None = None  # the epoch after whose validation the pruner stopped the run
        self.reported: dict[int, float] = {}

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.pruned_epoch is not None:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise KeyError(f"tune: the pruner watches '{self.monitor}', which the model did not log "
                           f"(logged: {', '.join(sorted(trainer.callback_metrics)) or 'nothing'})")
        epoch = int(trainer.current_epoch)
        self.reported[epoch] = float(value)  # one host read per epoch, outside any training step
        self.trial.report(self.reported[epoch], epoch)
        if self.trial.should_prune():
            self.pruned_epoch = epoch
            trainer.should_stop = True

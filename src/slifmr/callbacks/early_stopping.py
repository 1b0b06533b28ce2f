"""Early stopping that does not stop on the popularity plateau.

On sparse data a freshly initialised model's first validation is popularity-like and can beat
the next several epochs (LightGCN on KGAT's Amazon-Book: valid Recall@20 0.258 at epoch 0, below
it for epochs 1-8; with patience 5 it stopped at epoch 6, far from its peak). Lightning's
``EarlyStopping`` counts patience from epoch 0, so it stops there. This one ignores the
validations of the first ``warmup_epochs`` epochs entirely: they set neither the best score nor
the patience counter; from epoch ``warmup_epochs`` on it is Lightning's rule unchanged. The best
checkpoint (``ModelCheckpoint``) still sees every epoch, so an early peak is kept, not lost.

The same rule and the same values (``conf/callbacks/default.yaml``) hold for every model; the
tuning pruner (``slifmr.tune``) waits the same number of epochs before it may stop a trial.
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EarlyStopping as _LightningEarlyStopping


class EarlyStopping(_LightningEarlyStopping):
    """Lightning's ``EarlyStopping`` that starts watching at epoch ``warmup_epochs``."""

    def __init__(self, monitor: str, mode: str = "max", patience: int = 10, min_delta: float = 0.0,
                 warmup_epochs: int = 0, **kwargs) -> None:
        if warmup_epochs < 0:
            raise ValueError(f"early_stopping.warmup_epochs must be >= 0, got {warmup_epochs}")
        super().__init__(monitor=monitor, mode=mode, patience=patience, min_delta=min_delta, **kwargs)
        self.warmup_epochs = int(warmup_epochs)

    def _warming_up(self, trainer: pl.Trainer) -> bool:
        return trainer.current_epoch < self.warmup_epochs

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._warming_up(trainer):
            super().on_validation_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._warming_up(trainer):
            super().on_train_epoch_end(trainer, pl_module)

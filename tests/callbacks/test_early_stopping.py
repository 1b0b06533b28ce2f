"""Early stopping with a warm-up: a synthetic validation curve with a popularity-like epoch 0."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from slifmr.callbacks.early_stopping import EarlyStopping

# epoch 0 is the popularity plateau (0.30); epochs 1-8 are below it; the model then climbs past it
# and peaks at epoch 14 (0.40), after which it declines
CURVE = [0.30, 0.20, 0.21, 0.22, 0.23, 0.24, 0.25, 0.26, 0.27, 0.28, 0.31, 0.33, 0.36, 0.38, 0.40,
         0.39, 0.38, 0.37, 0.36, 0.35, 0.34, 0.33, 0.32, 0.31, 0.30, 0.29, 0.28, 0.27, 0.26, 0.25]


class CurveModule(pl.LightningModule):
    """Logs CURVE[epoch] as the validation metric; trains nothing of interest."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.w * batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        self.log("val/recall@20", CURVE[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _fit(callback: EarlyStopping) -> int:
    """Epochs run before the callback stopped training."""
    loader = DataLoader(TensorDataset(torch.ones(1, 1)), batch_size=1)
    trainer = pl.Trainer(max_epochs=len(CURVE), callbacks=[callback], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(CurveModule(), loader, loader)
    return trainer.current_epoch


def test_without_warmup_stops_on_the_plateau():
    # patience 5 counted from the epoch-0 score: epochs 1-5 do not beat it, so it stops after epoch 5
    assert _fit(EarlyStopping("val/recall@20", patience=5, warmup_epochs=0)) == 6


def test_warmup_ignores_the_plateau_and_finds_the_peak():
    cb = EarlyStopping("val/recall@20", patience=5, warmup_epochs=10)
    epochs = _fit(cb)
    # watching from epoch 10: best at epoch 14 (0.40), epochs 15-19 without improvement -> stops after 19
    assert epochs == 20
    assert cb.best_score.item() == pytest.approx(0.40)
    assert cb.stopped_epoch == 19


def test_negative_warmup_is_an_error():
    with pytest.raises(ValueError, match="warmup_epochs"):
        EarlyStopping("val/recall@20", warmup_epochs=-1)

"""The pruning callback stops a trial worse than the median at the same epoch (synthetic curves),
and the summary counts what the pruner saved."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

optuna = pytest.importorskip("optuna")

from slifmr.callbacks.trial_pruning import TrialPruningCallback  # noqa: E402


class CurveModule(pl.LightningModule):
    """Logs curve[epoch] as val/recall@20; trains nothing of interest."""

    def __init__(self, curve: list[float]) -> None:
        super().__init__()
        self.curve = curve
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.w * batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        self.log("val/recall@20", self.curve[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _run(study, curve: list[float]) -> tuple[TrialPruningCallback, int]:
    trial = study.ask()
    cb = TrialPruningCallback(trial, monitor="val/recall@20")
    loader = DataLoader(TensorDataset(torch.ones(1, 1)), batch_size=1)
    trainer = pl.Trainer(max_epochs=len(curve), callbacks=[cb], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(CurveModule(curve), loader, loader)
    if cb.pruned_epoch is not None:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, max(curve))
    return cb, trainer.current_epoch


def test_a_trial_below_the_median_stops_after_the_warmup():
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=3))
    good = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    for c in (good, [v + 0.01 for v in good]):
        cb, epochs = _run(study, c)
        assert cb.pruned_epoch is None and epochs == len(good)  # the first two trials are never pruned
    bad = [0.15, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]  # above the median at epoch 0, below from epoch 1
    cb, epochs = _run(study, bad)
    assert cb.pruned_epoch == 3  # steps 0-2 are the warm-up; at step 3 its best (0.15) < median (0.405)
    assert epochs == 4 and sorted(cb.reported) == [0, 1, 2, 3]
    assert study.trials[-1].state == optuna.trial.TrialState.PRUNED
    better = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    cb, epochs = _run(study, better)
    assert cb.pruned_epoch is None and epochs == len(better)


def test_summary_counts_the_epochs_the_pruner_saved():
    from omegaconf import OmegaConf

    from slifmr.tune.search import summarize

    study = optuna.create_study(direction="maximize")
    study.set_user_attr("model", "mf")
    study.set_user_attr("dataset", "toy")
    study.set_user_attr("metric", "val/recall@20")
    dist = {"x": optuna.distributions.CategoricalDistribution([1, 2, 3, 4, 5])}
    completed = [(1, 0.30, 20), (2, 0.35, 30), (3, 0.32, 40)]  # (x, value, epochs): median epochs 30
    for x, value, epochs in completed:
        study.add_trial(optuna.trial.create_trial(params={"x": x}, distributions=dist, value=value,
                                                  user_attrs={"epochs": epochs}))
    for x, epochs in ((4, 12), (5, 35)):  # saved 30 - 12 = 18 and max(0, 30 - 35) = 0
        study.add_trial(optuna.trial.create_trial(params={"x": x}, distributions=dist,
                                                  state=optuna.trial.TrialState.PRUNED,
                                                  user_attrs={"epochs": epochs, "pruned_epoch": epochs - 1}))
    cfg = OmegaConf.create({"tune": {"direction": "maximize", "trials": 5, "seed": 0,
                                     "sampler": {"n_startup_trials": 5}, "pruner": {"n_warmup_steps": 10}}})
    s = summarize(study, cfg, "python -m slifmr.tune", 1.0, [])
    assert (s["trials"], s["completed"], s["pruned"]) == (5, 3, 2)
    assert s["epochs_saved_by_pruning"] == 18 and s["epochs_run_by_pruned"] == 47
    assert s["epochs_run"] == 20 + 30 + 40 + 12 + 35
    assert s["best"]["value"] == 0.35 and s["best"]["params"] == {"x": 2}

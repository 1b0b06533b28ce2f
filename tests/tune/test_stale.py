"""A trial left running by a killed search is failed and its point queued again on resume."""

from __future__ import annotations

import pytest

optuna = pytest.importorskip("optuna")

from slifmr.tune.search import _finished, _requeue_stale  # noqa: E402


def test_a_killed_trial_is_failed_and_requeued(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    done = study.ask()
    done.suggest_categorical("model.lr", [1e-3, 1e-2])
    study.tell(done, 0.3)
    killed = study.ask()  # the search dies while this one trains: it stays RUNNING in the file
    lr = killed.suggest_categorical("model.lr", [1e-3, 1e-2])

    resumed = optuna.load_study(study_name="s", storage=storage)
    assert _requeue_stale(resumed, storage) == 1
    states = [t.state for t in resumed.get_trials()]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                      optuna.trial.TrialState.WAITING]
    again = resumed.ask()  # the queued trial: the killed one's point runs next
    assert again.number == 2 and again.suggest_categorical("model.lr", [1e-3, 1e-2]) == lr
    assert len(_finished(resumed)) == 1  # the failed (and the running) one do not count against the budget


def test_the_defaults_score_survives_a_killed_trial_0(tmp_path):
    """Trial 0 runs the model's defaults; killed, it is failed and its point re-queued. The summary's
    defaults' score is then the re-queued run's (it was None: SLIF-MR's ml-100k-kg search)."""
    from omegaconf import OmegaConf

    from slifmr.tune.search import summarize

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.set_user_attr("default_point", {"model.lr": 1e-3})
    study.enqueue_trial({"model.lr": 1e-3})  # as the search queues the defaults first
    killed = study.ask()
    killed.suggest_categorical("model.lr", [1e-3, 1e-2])  # trial 0: the defaults, then the search dies
    resumed = optuna.load_study(study_name="s", storage=storage)
    _requeue_stale(resumed, storage)
    again = resumed.ask()
    again.suggest_categorical("model.lr", [1e-3, 1e-2])
    again.set_user_attr("epochs", 5)
    resumed.tell(again, 0.31)
    resumed.enqueue_trial({"model.lr": 1e-2})
    other = resumed.ask()
    other.suggest_categorical("model.lr", [1e-3, 1e-2])
    other.set_user_attr("epochs", 5)
    resumed.tell(other, 0.33)
    cfg = OmegaConf.create({"tune": {"direction": "maximize", "trials": 2, "seed": 0,
                                     "sampler": {"n_startup_trials": 1}, "pruner": {"n_startup_trials": 1}}})
    summary = summarize(resumed, cfg, "cmd", 1.0, [])
    assert summary["failed"] == 1 and summary["trials"] == 2
    assert summary["default"] == {"trial": 1, "params": {"model.lr": 1e-3}, "state": "COMPLETE", "value": 0.31,
                                  "is_model_default": True}

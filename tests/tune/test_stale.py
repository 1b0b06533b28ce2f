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

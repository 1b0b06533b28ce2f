"""slifmr.tune end to end on the tiny dataset: trials are normal runs that never test, the study
resumes from its SQLite file, and best.yaml is the best trial's point."""

from __future__ import annotations

import json

import pytest
import yaml

pytest.importorskip("optuna")

from hydra_compose import make_cfg  # noqa: E402
from slifmr.tune.search import STUDY_DB, run_search  # noqa: E402


def _search(tmp_path, shared_data, trials: int, extra: list[str] = ()) -> dict:
    overrides = ["model=mf", "dataset=ml-100k-kg-tiny", f"paths.data_dir={shared_data}",
                 "trainer.max_epochs=1", f"tune.trials={trials}", f"tune.dir={tmp_path / 'tune'}",
                 "tune.sampler.n_startup_trials=2", *extra]
    cfg = make_cfg(tmp_path / f"driver{trials}", overrides, config_name="tune")
    return run_search(cfg, overrides)


def test_search_never_tests_and_resumes(tmp_path, shared_data):
    # test=true on the command line must not reach a trial: the search forces test=false
    first = _search(tmp_path, shared_data, trials=2, extra=["test=true"])
    out = tmp_path / "tune"
    assert (out / STUDY_DB).is_file()
    assert first["trials"] == 2 and first["completed"] + first["pruned"] == 2
    runs = sorted((out / "trials").iterdir())
    assert [r.name for r in runs] == ["000", "001"]
    # trial 0 is conf/model/mf.yaml's own point, so the summary compares tuned with default
    assert first["trials_table"][0]["params"] == {"model.lr": 0.01, "model.reg_weight": 1.0e-4}
    assert first["default"]["is_model_default"] and first["default"]["value"] == first["trials_table"][0]["value"]
    stamps = {r.name: (r / "record.json").stat().st_mtime_ns for r in runs}
    for r in runs:
        rec = json.loads((r / "record.json").read_text())
        assert rec["test"] == {} and rec["per_user_test"] is None  # never tested
        assert rec["config"]["dataset"]["withhold_test"] is True and rec["config"]["test"] is False
        assert "dataset.withhold_test=true" in rec["overrides"] and "test=false" in rec["overrides"]
        assert rec["val"]["recall@20"] >= 0.0
        assert not list(r.rglob("*.ckpt"))  # a trial writes no checkpoint (tune.trial_overrides)

    again = _search(tmp_path, shared_data, trials=3, extra=["test=true"])
    assert again["trials"] == 3 and len(again["trials_table"]) == 3  # one new trial
    assert {r.name: (r / "record.json").stat().st_mtime_ns for r in runs} == stamps  # the old ones not re-run
    new = again["trials_table"][2]
    if new["duplicate_of"] is None:  # a new point: a new run
        assert (out / "trials" / "002" / "record.json").is_file()
    else:  # TPE drew a point already run: its value, and no second run
        assert not (out / "trials" / "002").exists()
        assert new["value"] == again["trials_table"][new["duplicate_of"]]["value"]

    # best.yaml: the highest validation value among completed trials, as overrides
    rows = [t for t in again["trials_table"] if t["state"] == "COMPLETE"]
    top = max(rows, key=lambda t: t["value"])
    point = yaml.safe_load((out / "best.yaml").read_text())
    assert point["valid"] == pytest.approx(top["value"]) and point["overrides"] == top["params"]
    assert point["model"] == "mf" and point["dataset"] == "ml-100k-kg-tiny" and point["trials"] == 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"]["trial"] == top["number"] and summary["budget"] == 3


def test_resuming_with_another_space_is_refused(tmp_path, shared_data):
    from slifmr.tune.space import SpaceError

    _search(tmp_path, shared_data, trials=1)
    # fixing model.lr on the command line removes it from the searched space: not the same study
    with pytest.raises(SpaceError, match="other settings"):
        _search(tmp_path, shared_data, trials=2, extra=["model.lr=0.01"])


def test_a_test_metric_cannot_be_the_objective(tmp_path, shared_data):
    from slifmr.tune.space import SpaceError

    with pytest.raises(SpaceError, match="validation metric"):
        _search(tmp_path, shared_data, trials=1, extra=["tune.metric=test/recall@20"])


def test_resuming_a_finished_search_leaves_its_summary(tmp_path, shared_data):
    # the summary records the session that ran the trials; a resume that runs nothing must not
    # overwrite its wall time and date with its own (it used to: session_wall_s 0.5 s)
    _search(tmp_path, shared_data, trials=2)
    out = tmp_path / "tune"
    path = out / "summary.json"
    first = json.loads(path.read_text())
    # make the stored session distinguishable from any the resume could write
    first["session_wall_s"], first["written"] = 12345.6, "2000-01-01T00:00:00+00:00"
    path.write_text(json.dumps(first))
    best = (out / "best.yaml").read_bytes()
    again = _search(tmp_path, shared_data, trials=2)
    assert json.loads(path.read_text()) == first and again == first
    assert (out / "best.yaml").read_bytes() == best
    # a resume that does run a trial writes a new summary, with its own session's time
    more = _search(tmp_path, shared_data, trials=3)
    assert more["trials"] == 3 and more["session_wall_s"] != 12345.6
    assert json.loads(path.read_text())["written"] != first["written"]

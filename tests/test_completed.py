"""skip_completed=true: a finished job of the same overrides is read back, anything else runs."""

from __future__ import annotations

import json

import pytest

from hydra_compose import make_cfg
from slifmr.completed import completed_metrics
from slifmr.errors import DataError

OV = ["model=mf", "seed=1"]


def _record(run_dir, overrides=OV, status="completed", test=True):
    run_dir.mkdir(parents=True, exist_ok=True)
    rec = {"status": status, "overrides": overrides, "val": {"recall@20": 0.25, "view_x/recall@20": 0.1},
           "test": {"recall@20": 0.3} if test else {}}
    (run_dir / "record.json").write_text(json.dumps(rec))


def test_a_completed_record_of_the_same_overrides_stands_for_the_job(tmp_path):
    _record(tmp_path)
    got = completed_metrics(tmp_path, ["seed=1", "model=mf", "skip_completed=true"], tested=True)  # order, switch aside
    assert got == {"val/recall@20": 0.25, "val/view_x/recall@20": 0.1, "test/recall@20": 0.3}


@pytest.mark.parametrize("make, overrides, tested", [
    (None, OV, True),  # no record: never ran
    (dict(status="running"), OV, True),  # killed mid-way
    (dict(test=False), OV, True),  # fitted but not tested, and this job tests
    ({}, ["model=mf", "seed=2"], True),  # another job's record in this directory
    ({}, [*OV, "model.lr=0.1"], True),
])
def test_anything_else_runs(tmp_path, make, overrides, tested):
    if make is not None:
        _record(tmp_path, **make)
    assert completed_metrics(tmp_path, overrides, tested) is None


def test_an_untested_record_serves_an_untested_job(tmp_path):
    _record(tmp_path, test=False)
    assert completed_metrics(tmp_path, OV, tested=False) == {"val/recall@20": 0.25, "val/view_x/recall@20": 0.1}


def test_a_broken_record_names_the_file(tmp_path):
    (tmp_path / "record.json").write_text("{not json")
    with pytest.raises(DataError, match="record.json: not valid JSON"):
        completed_metrics(tmp_path, OV, tested=True)


def test_train_skips_a_finished_job_and_reruns_an_unfinished_one(tmp_path, shared_data, monkeypatch):
    from slifmr import train as train_module

    base = ["dataset=ml-100k-kg-tiny", f"paths.data_dir={shared_data}", "model=mf", "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false"]
    first = train_module.train(make_cfg(tmp_path, base))
    record = tmp_path / "run" / "record.json"
    stamp = record.stat().st_mtime_ns

    def no_training(*_, **__):
        raise AssertionError("a completed job was trained again")

    monkeypatch.setattr(train_module, "apply_tuned", no_training)
    again = train_module.train(make_cfg(tmp_path, [*base, "skip_completed=true"]))
    assert again["test/recall@20"] == pytest.approx(first["test/recall@20"])
    assert again["val/recall@20"] == pytest.approx(json.loads(record.read_text())["val"]["recall@20"])
    assert record.stat().st_mtime_ns == stamp
    # off (the default) or another job: it trains
    with pytest.raises(AssertionError, match="trained again"):
        train_module.train(make_cfg(tmp_path, base))
    with pytest.raises(AssertionError, match="trained again"):
        train_module.train(make_cfg(tmp_path, [*base, "seed=3", "skip_completed=true"]))

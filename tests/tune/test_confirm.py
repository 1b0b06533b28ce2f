"""The confirmation phase: the best points and the defaults re-trained on more seeds, selected on the mean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from slifmr.records import RECORD_FILE
from slifmr.tune.confirm import apply_confirm, candidates, confirm_settings, run_confirm
from slifmr.tune.space import SpaceError


def _cfg(top_k: int, seeds: list[int], seed: int = 42, direction: str = "maximize"):
    return OmegaConf.create({"seed": seed, "tune": {"metric": "val/recall@20", "direction": direction,
                                                    "confirm": {"top_k": top_k, "seeds": seeds}}})


def _row(number: int, value: float | None, params: dict, state: str = "COMPLETE", dup: int | None = None) -> dict:
    return {"number": number, "state": state, "value": value, "params": params, "duplicate_of": dup,
            "run_dir": f"trials/{number:03d}", "best_epoch": 3, "epochs": 5}


DEFAULT = {"model.lr": 1e-3}
ROWS = [_row(0, 0.30, DEFAULT), _row(1, 0.34, {"model.lr": 1e-2}), _row(2, 0.33, {"model.lr": 1e-4}),
        _row(3, 0.36, {"model.lr": 5e-2}, state="PRUNED"), _row(4, 0.34, {"model.lr": 1e-2}, dup=1)]


def _as_overrides(params: dict) -> list[str]:
    return [f"{k}={v}" for k, v in params.items()]


def _stub(values: dict[tuple[str, int], float], calls: list):
    """A runner that writes the record a real run would, with the validation score ``values`` gives."""
    def run(overrides: list[str], run_dir: Path) -> None:
        seed = int(next(o for o in overrides if o.startswith("seed=")).split("=")[1])
        point = " ".join(o for o in overrides if not o.startswith("seed="))
        calls.append((point, seed))
        run_dir.mkdir(parents=True)
        (run_dir / RECORD_FILE).write_text(json.dumps({"status": "completed", "val": {"recall@20": values[(point, seed)]},
                                                       "time_s": {"total": 2.5}}))
    return run


def test_candidates_are_the_top_completed_points_plus_the_defaults():
    got = candidates(ROWS, 2, DEFAULT, sign=1.0)
    # trial 3 was pruned and trial 4 repeats trial 1: neither is a candidate; the defaults are added last
    assert [r["number"] for r in got] == [1, 2, 0]
    assert [r["number"] for r in candidates(ROWS, 3, DEFAULT, sign=1.0)] == [1, 2, 0]  # defaults not twice
    assert [r["number"] for r in candidates(ROWS, 1, None, sign=1.0)] == [1]
    assert [r["number"] for r in candidates(ROWS, 1, DEFAULT, sign=-1.0)] == [0]  # minimising: lowest first


def test_the_mean_over_seeds_selects_and_replaces_the_one_seed_values(tmp_path):
    # one seed ranks lr 1e-2 first (0.34); over seeds 43 and 44 the defaults are better on average:
    # lr 1e-2: (0.34 + 0.31 + 0.32) / 3 = 0.3233; lr 1e-4: (0.33 + 0.30 + 0.30) / 3 = 0.31;
    # defaults: (0.30 + 0.35 + 0.34) / 3 = 0.33
    values = {("model.lr=0.01", 43): 0.31, ("model.lr=0.01", 44): 0.32, ("model.lr=0.0001", 43): 0.30,
              ("model.lr=0.0001", 44): 0.30, ("model.lr=0.001", 43): 0.35, ("model.lr=0.001", 44): 0.34}
    calls: list = []
    res = run_confirm(ROWS, _cfg(2, [43, 44]), tmp_path, DEFAULT, _as_overrides, _stub(values, calls))
    assert res["selected_trial"] == 0 and res["seeds"] == [42, 43, 44] and res["runs"] == 6
    assert res["seconds"] == 6 * 2.5  # what the phase cost, from the runs' records
    means = {p["trial"]: p["mean"] for p in res["points"]}
    assert means == pytest.approx({1: (0.34 + 0.31 + 0.32) / 3, 2: 0.31, 0: (0.30 + 0.35 + 0.34) / 3})
    assert sorted(calls) == sorted(values)  # each point at each seed, once
    assert (tmp_path / "confirm" / "001-seed43" / RECORD_FILE).is_file()

    summary = {"trials_table": ROWS, "best": {"trial": 1, "value": 0.34},
               "default": {"trial": 0, "params": DEFAULT, "value": 0.30, "is_model_default": True}}
    out = apply_confirm(summary, res)
    assert out["best"]["trial"] == 0 and out["best"]["params"] == DEFAULT
    assert out["best"]["value"] == pytest.approx(0.33) and out["best"]["value_trial"] == 0.30
    assert out["default"]["value"] == pytest.approx(0.33) and out["default"]["value_trial"] == 0.30

    # run again: every run has its finished record, so nothing is trained and the result is the same
    again: list = []
    assert run_confirm(ROWS, _cfg(2, [43, 44]), tmp_path, DEFAULT, _as_overrides, _stub(values, again)) == res
    assert again == []


def test_a_run_left_unfinished_is_run_again(tmp_path):
    values = {("model.lr=0.01", 43): 0.31}
    unfinished = tmp_path / "confirm" / "001-seed43"
    unfinished.mkdir(parents=True)
    (unfinished / RECORD_FILE).write_text(json.dumps({"status": "running", "val": {}}))
    calls: list = []

    def run(overrides, run_dir):  # a real run overwrites the directory's record
        calls.append(overrides)
        (run_dir / RECORD_FILE).write_text(json.dumps({"status": "completed", "val": {"recall@20": 0.31}}))

    res = run_confirm(ROWS, _cfg(1, [43]), tmp_path, None, _as_overrides, run)
    assert len(calls) == 1 and res["points"][0]["values"] == {"42": 0.34, "43": 0.31}


@pytest.mark.parametrize("top_k, seeds, seed, match", [
    (-1, [43], 42, "top_k must be >= 0"),
    (2, [], 42, "at least one seed"),
    (2, [43, 43], 42, "repeats a seed"),
    (2, [42, 43], 42, "trials' own seed"),
])
def test_bad_settings_name_the_key(top_k, seeds, seed, match):
    with pytest.raises(SpaceError, match=match):
        confirm_settings(_cfg(top_k, seeds, seed))


def test_off_by_default_runs_nothing(tmp_path):
    def run(*_):
        raise AssertionError("no run when the phase is off")
    assert run_confirm(ROWS, _cfg(0, [43]), tmp_path, DEFAULT, _as_overrides, run) is None
    assert confirm_settings(_cfg(0, [])) == (0, [])


def test_a_search_with_confirmation_end_to_end(tmp_path, shared_data):
    """Through slifmr.tune on the tiny dataset: the confirmation runs are normal runs at their seed that never
    test, and best.yaml carries the mean it was selected on."""
    pytest.importorskip("optuna")
    from hydra_compose import make_cfg
    from slifmr.tune.search import run_search

    overrides = ["model=mf", "dataset=ml-100k-kg-tiny", f"paths.data_dir={shared_data}", "trainer.max_epochs=1",
                 "tune.trials=2", f"tune.dir={tmp_path / 'tune'}", "tune.sampler.n_startup_trials=2",
                 "tune.confirm.top_k=1", "tune.confirm.seeds=[7]", "seed=5"]  # trials at seed 5, confirmed at 7
    summary = run_search(make_cfg(tmp_path / "driver", overrides, config_name="tune"), overrides)
    conf = summary["confirm"]
    assert conf["seeds"] == [5, 7]
    assert all(json.loads((r / RECORD_FILE).read_text())["seed"] == 5 for r in (tmp_path / "tune" / "trials").iterdir())
    runs = sorted((tmp_path / "tune" / "confirm").iterdir())
    assert len(runs) == conf["runs"] == len(conf["points"]) and 1 <= len(runs) <= 2
    assert conf["seconds"] == pytest.approx(sum(json.loads((r / RECORD_FILE).read_text())["time_s"]["total"]
                                                for r in runs), abs=0.1)
    for run_dir in runs:
        rec = json.loads((run_dir / RECORD_FILE).read_text())
        assert rec["seed"] == 7 and rec["config"]["seed"] == 7
        assert rec["test"] == {} and rec["config"]["dataset"]["withhold_test"] is True
        trial = int(run_dir.name.split("-")[0])
        point = next(p for p in conf["points"] if p["trial"] == trial)
        assert point["values"]["7"] == rec["val"]["recall@20"]
    win = next(p for p in conf["points"] if p["trial"] == conf["selected_trial"])
    assert win["mean"] == max(p["mean"] for p in conf["points"])
    best = yaml.safe_load((tmp_path / "tune" / "best.yaml").read_text())
    assert best["valid"] == pytest.approx(win["mean"]) and best["overrides"] == win["params"]
    assert best["confirm_seeds"] == [5, 7]

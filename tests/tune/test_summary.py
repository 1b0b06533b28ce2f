"""slifmr.tune.summary tabulates the searches from their summary.json files; collect --keep copies
them; build_docs fills a ``kind=tune`` section from the copies."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from slifmr.tune.collect import main as collect_main
from slifmr.tune.summary import SummaryError, changed_params, markdown, read_summaries, summary_row

ROOT = Path(__file__).resolve().parents[2]


def _summary(model: str, dataset: str, *, default_value: float, best_value: float, best_params: dict,
             trials: int = 12, budget: int = 12, completed: int = 8, saved: float | None = 30.0) -> dict:
    default_params = {"model.lr": 0.01, "model.reg_weight": 1e-4}
    return {"model": model, "dataset": dataset, "budget": budget, "trials": trials, "completed": completed,
            "pruned": trials - completed, "failed": 0, "duplicates": 1,
            "best": {"trial": 4, "value": best_value, "params": best_params, "best_epoch": 40},
            "default": {"trial": 0, "params": default_params, "state": "COMPLETE", "value": default_value,
                        "is_model_default": True},
            "epochs_run": 300, "epochs_saved_by_pruning": saved, "trial_seconds": 1800.0,
            "trials_table": []}


def _write(root: Path, s: dict) -> Path:
    d = root / s["dataset"] / s["model"]
    d.mkdir(parents=True, exist_ok=True)
    (d / "summary.json").write_text(json.dumps(s))
    (d / "best.yaml").write_text(yaml.safe_dump({"model": s["model"], "dataset": s["dataset"],
                                                 "overrides": s["best"]["params"]}))
    return d


def test_row_change_and_moved_keys():
    s = _summary("mf", "d", default_value=0.25, best_value=0.30, best_params={"model.lr": 0.001, "model.reg_weight": 1e-4})
    row = summary_row(s)
    assert row["change"] == pytest.approx(0.2)
    assert row["point"] == "lr 1e-3"  # reg_weight did not move, so it is not listed
    same = _summary("mf", "d", default_value=0.3, best_value=0.3, best_params={"model.lr": 0.01, "model.reg_weight": 1e-4})
    assert changed_params(same["best"], same["default"]) == "defaults"
    # trial 0 that was not the model's defaults (e.g. a key fixed on the command line) gives no "default" score
    s["default"]["is_model_default"] = False
    assert summary_row(s)["default_valid"] is None and summary_row(s)["change"] is None


def test_table_orders_models_states_budget_and_totals(tmp_path):
    root = tmp_path / "tune"
    _write(root, _summary("slifmr", "d1", default_value=0.30, best_value=0.33, best_params={"model.lr": 0.001}))
    _write(root, _summary("mf", "d1", default_value=0.20, best_value=0.25, best_params={"model.lr": 0.001}))
    _write(root, _summary("lightgcn", "d1", default_value=0.30, best_value=0.30, trials=7, completed=5,
                          best_params={"model.lr": 0.01, "model.reg_weight": 1e-4}, saved=None))
    _write(root, _summary("mf", "d2", default_value=0.1, best_value=0.2, best_params={"model.lr": 0.001}))
    text = markdown(read_summaries(root, "d1"))
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split(" | ")[0] for r in rows] == ["| MF-BPR", "| LightGCN", "| SLIF-MR"]  # Table II's order
    assert "+25.0 %" in rows[0] and "+10.0 %" in rows[2] and "| defaults |" in rows[1]
    assert "| 12 (8 / 4) |" in rows[0] and "| 7 (5 / 2) |" in rows[1] and "| n/a |" in rows[1]  # no saving known
    assert "d2" not in text
    assert "Total: 900 epochs trained, 60 saved by pruning (6 % of 960)" in text
    assert "**Below budget** (search not finished): lightgcn." in text
    assert markdown(read_summaries(root)).count("searches, budget 12") == 2  # both datasets


def test_bad_summaries_are_named(tmp_path):
    root = tmp_path / "tune"
    d = _write(root, _summary("mf", "d", default_value=0.2, best_value=0.3, best_params={"model.lr": 0.001}))
    (d / "summary.json").write_text("{not json")
    with pytest.raises(SummaryError, match=r"mf/summary.json: not valid JSON"):
        read_summaries(root)
    (d / "summary.json").write_text(json.dumps({"model": "mf", "dataset": "d"}))
    with pytest.raises(SummaryError, match=r"mf/summary.json: field 'trials' is missing"):
        read_summaries(root)
    with pytest.raises(SummaryError, match="no search summaries"):
        markdown([])


def test_collect_keep_copies_and_build_docs_fills_a_tune_section(tmp_path):
    runs, repo = tmp_path / "outputs" / "tune", tmp_path / "repo"
    _write(runs, _summary("mf", "d1", default_value=0.2, best_value=0.3, best_params={"model.lr": 0.001}))
    (runs / "d1" / "mf" / "trials" / "000").mkdir(parents=True)  # trial run dirs are not copied
    out = tmp_path / "set.yaml"
    assert collect_main([str(runs), "--name", "s", "--out", str(out), "--keep", str(repo / "docs" / "tuning")]) == 0
    kept = sorted(p.relative_to(repo).as_posix() for p in (repo / "docs" / "tuning").rglob("*") if p.is_file())
    assert kept == ["docs/tuning/d1/mf/best.yaml", "docs/tuning/d1/mf/summary.json"]

    spec = importlib.util.spec_from_file_location("build_docs", ROOT / "scripts" / "build_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    page = repo / "docs" / "page.md"
    page.write_text("a\n<!-- report:tune_d1 kind=tune dataset=d1 -->\nOLD\n<!-- /report:tune_d1 -->\n"
                    "<!-- report:tune_d9 kind=tune dataset=d9 -->\n<!-- /report:tune_d9 -->\nz\n")
    assert mod.build(tmp_path / "sweeps", repo / "docs") == [page]
    text = page.read_text()
    assert "OLD" not in text and "| MF-BPR | 12 (8 / 4) | 1 | 0.2000 | 0.3000 | +50.0 % | lr 1e-3 |" in text
    assert "(no records under docs/tuning yet)" in text  # d9 has no search
    assert mod.build(tmp_path / "sweeps", repo / "docs") == []  # idempotent

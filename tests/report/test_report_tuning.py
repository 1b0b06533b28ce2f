"""The report says per row whether it was tuned (set, budget, validation score) or default."""

from __future__ import annotations

import csv
import io
import json

import numpy as np

from slifmr.report.cli import report
from synthetic_records import make_record


def _tune(path, point: dict | None) -> None:
    rec = json.loads(path.read_text())
    rec["config"]["tuned"] = point
    path.write_text(json.dumps(rec))


def test_rows_say_tuned_or_default(tmp_path):
    rng = np.random.default_rng(0)
    point = {"name": "cpu12", "status": "tuned", "trials": 12, "monitor": "val/recall@20", "valid": 0.3421,
             "default_valid": 0.3377}
    for seed in (1, 2):
        for model in ("pop", "mf", "lightgcn"):
            v = rng.uniform(0, 1, 10)
            path = make_record(tmp_path / "runs", model, seed, {"recall@20": v, "ndcg@20": v / 2})
            if model == "lightgcn":
                _tune(path, point)
            elif model == "pop":
                _tune(path, {"name": "cpu12", "status": "default", "reason": "nothing to tune"})
    res = report([tmp_path / "runs"], tmp_path / "out", plot="none")
    md = res["markdown"]
    assert "| LightGCN | toy | tuned (cpu12) | 12 | 0.3421 | 0.3377 |" in md
    assert "| MF-BPR | toy | default |  |  |  |" in md
    assert "| Pop | toy | default (nothing to tune) |" in md
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "tuning.csv").read_text())))
    assert {r["label"]: r["status"] for r in rows} == {"Pop": "default", "MF-BPR": "default", "LightGCN": "tuned"}


def test_a_cell_mixing_tuned_and_default_runs_says_so(tmp_path):
    rng = np.random.default_rng(1)
    for seed in (1, 2):
        v = rng.uniform(0, 1, 10)
        path = make_record(tmp_path / "runs", "mf", seed, {"recall@20": v, "ndcg@20": v / 2})
        if seed == 1:
            _tune(path, {"name": "cpu12", "status": "tuned", "trials": 12, "valid": 0.3})
    md = report([tmp_path / "runs"], tmp_path / "out", plot="none")["markdown"]
    assert "| MF-BPR | toy | mixed: cpu12, default |" in md


def test_a_search_summarised_again_between_seeds_is_still_one_point(tmp_path):
    """Seeds of one point whose records differ only in the defaults' score (the search's summary was
    re-written between them, after its killed trial 0 was re-run) are one tuned row, not "mixed"."""
    rng = np.random.default_rng(2)
    point = {"name": "dir", "status": "tuned", "trials": 12, "monitor": "val/recall@20", "valid": 0.3339}
    for seed, default_valid in ((1, None), (2, 0.3258), (3, 0.3258)):
        v = rng.uniform(0, 1, 10)
        path = make_record(tmp_path / "runs", "slifmr", seed, {"recall@20": v, "ndcg@20": v / 2})
        _tune(path, {**point, "default_valid": default_valid})
    v = rng.uniform(0, 1, 10)  # another point of the same set (another valid): mixed
    path = make_record(tmp_path / "runs", "mf", 1, {"recall@20": v, "ndcg@20": v / 2})
    _tune(path, {**point, "valid": 0.30})
    path = make_record(tmp_path / "runs", "mf", 2, {"recall@20": v, "ndcg@20": v / 2})
    _tune(path, {**point, "valid": 0.31})
    md = report([tmp_path / "runs"], tmp_path / "out", plot="none")["markdown"]
    assert "| SLIF-MR | toy | tuned (dir) | 12 | 0.3339 | 0.3258 |" in md
    assert "| MF-BPR | toy | mixed: dir |" in md


def test_untuned_reports_say_defaults(tmp_path):
    v = np.linspace(0, 1, 10)
    make_record(tmp_path / "runs", "mf", 1, {"recall@20": v, "ndcg@20": v})
    md = report([tmp_path / "runs"], tmp_path / "out", plot="none")["markdown"]
    assert "every row ran at its config defaults" in md

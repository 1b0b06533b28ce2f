"""scripts/recheck_table.py: the pre-registered rule of scripts/recheck_defaults.sh, on hand-made records."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "recheck_table.py"
spec = importlib.util.spec_from_file_location("recheck_table", SCRIPT)
recheck = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recheck)


def write(root: Path, arm: str, seed: int, dataset: str, val: float, test: dict | None = None) -> None:
    d = root / arm / f"seed{seed}" / dataset
    d.mkdir(parents=True)
    (d / "record.json").write_text(json.dumps({"val": {"recall@20": val}, "test": test or {}}))


def test_rule_needs_a_higher_mean_and_a_majority_of_datasets(tmp_path):
    # ref: 0.30 on a, b, c. "big" wins on one dataset by a lot (mean higher, 1 of 3): fails.
    # "broad" wins 2 of 3 by a little and loses 1 slightly (mean higher): passes.
    for s in (1, 2):
        for d in ("a", "b", "c"):
            write(tmp_path, "ref", s, d, 0.30)
        write(tmp_path, "big", s, "a", 0.40), write(tmp_path, "big", s, "b", 0.29), write(tmp_path, "big", s, "c", 0.29)
        write(tmp_path, "broad", s, "a", 0.31), write(tmp_path, "broad", s, "b", 0.31), write(tmp_path, "broad", s, "c", 0.295)
    table, passing, winner = recheck.decide(recheck.load(tmp_path), "ref")
    assert passing == ["broad"] and winner == "broad"
    assert "| big | 0.4000 (n=2) | 0.2900 (n=2) | 0.2900 (n=2) | 0.3267 | 1 of 3 |" in table


def test_only_cells_every_arm_completed_count(tmp_path):
    # "cand" has an extra seed-2 cell where it is far ahead; ref lacks it, so it is ignored.
    write(tmp_path, "ref", 1, "a", 0.30), write(tmp_path, "cand", 1, "a", 0.29), write(tmp_path, "cand", 2, "a", 0.50)
    _, passing, winner = recheck.decide(recheck.load(tmp_path), "ref")
    assert passing == [] and winner == "ref"


def test_a_record_with_test_metrics_is_refused(tmp_path):
    write(tmp_path, "ref", 1, "a", 0.30, test={"recall@20": 0.31})
    with pytest.raises(SystemExit, match="validation-only"):
        recheck.load(tmp_path)

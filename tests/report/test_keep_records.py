"""scripts/keep_records.py: what a study's tables and a search's resume need is kept, nothing
else; the kept copy rebuilds the same table; keeping twice writes nothing."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from pathlib import Path

import numpy as np

from slifmr.report.cli import report
from synthetic_records import make_record

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "keep_records.py"
spec = importlib.util.spec_from_file_location("keep_records", SCRIPT)
keep_records = importlib.util.module_from_spec(spec)
spec.loader.exec_module(keep_records)


def _study(root: Path, odd_record: bool = False) -> dict[str, Path]:
    rng = np.random.default_rng(3)
    runs = {}
    for model, level in (("mf", 0.2), ("lightgcn", 0.3)):
        for seed in (1, 2):
            vals = {"recall@20": np.clip(level + 0.1 * rng.standard_normal(25), 0, 1)}
            runs[(model, seed)] = make_record(root, model, seed, vals).parent
    for run in runs.values():  # what a real run also leaves: config, checkpoints, logs
        (run / ".hydra").mkdir()
        (run / ".hydra" / "config.yaml").write_text("seed: 1\n")
        (run / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "last.ckpt").write_bytes(b"\0" * 1000)
        (run / "train.log").write_text("log\n")
    killed = root / "model=mf,seed=3,dataset=toy"  # started, never finished
    (killed / ".hydra").mkdir(parents=True)
    (killed / ".hydra" / "config.yaml").write_text("seed: 3\n")
    if not odd_record:
        return runs
    unfinished = root / "model=mf,seed=4,dataset=toy"  # a record that is not completed
    unfinished.mkdir()
    (unfinished / "record.json").write_text(json.dumps({"schema": "slifmr.record/1", "status": "running"}))
    return runs


def test_keeps_records_per_user_values_and_config_only(tmp_path):
    runs = _study(tmp_path / "study", odd_record=True)
    written, same = keep_records.keep(tmp_path / "study", tmp_path / "kept")
    kept = sorted(p.relative_to(tmp_path / "kept").as_posix() for p in (tmp_path / "kept").rglob("*") if p.is_file())
    expected = sorted(f"{run.name}/{f}" for run in runs.values()
                      for f in ("record.json", "per_user_test.npz", ".hydra/config.yaml", ".hydra/overrides.yaml"))
    assert kept == expected and (written, same) == (len(expected), 0)
    assert keep_records.keep(tmp_path / "study", tmp_path / "kept") == (0, len(expected))  # nothing new

    (runs[("mf", 1)] / ".hydra" / "config.yaml").write_text("seed: 1\nchanged: true\n")
    assert keep_records.keep(tmp_path / "study", tmp_path / "kept") == (1, len(expected) - 1)


def test_the_kept_copy_rebuilds_the_same_table(tmp_path):
    _study(tmp_path / "study")
    keep_records.keep(tmp_path / "study", tmp_path / "kept")
    a = report([tmp_path / "study"], tmp_path / "ra", metrics=["recall@20"], plot="none")
    b = report([tmp_path / "kept"], tmp_path / "rb", metrics=["recall@20"], plot="none")
    assert (tmp_path / "ra" / "results.csv").read_text() == (tmp_path / "rb" / "results.csv").read_text()
    assert [c.p_value for c in a["comparisons"]] == [c.p_value for c in b["comparisons"]]


def test_a_search_keeps_its_journal_readable_and_its_choice(tmp_path):
    search = tmp_path / "tune" / "kgrec"
    (search / "trials" / "000").mkdir(parents=True)
    db = sqlite3.connect(search / "study.db")
    db.execute("create table trials (number integer, value real)")
    db.executemany("insert into trials values (?, ?)", [(0, 0.31), (1, 0.33)])
    db.commit()  # left open, as a running search leaves it
    (search / "best.yaml").write_text("overrides: {}\n")
    (search / "summary.json").write_text("{}\n")
    (search / "tune.log").write_text("log\n")
    keep_records.keep(search, tmp_path / "kept")
    db.close()
    # a finished search is not written again (its copy is byte for byte the journal)
    assert keep_records.keep(search, tmp_path / "kept") == (0, 3)
    names = sorted(p.name for p in (tmp_path / "kept").rglob("*") if p.is_file())
    assert names == ["best.yaml", "study.db", "summary.json"]
    copy = sqlite3.connect(tmp_path / "kept" / "study.db")
    assert copy.execute("select number, value from trials order by number").fetchall() == [(0, 0.31), (1, 0.33)]
    copy.close()

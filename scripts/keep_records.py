"""Copy the small files that a study's tables and a search's resume need, and nothing else.

    python scripts/keep_records.py outputs/sweeps/table2_tuned/ml-100k-kg docs/records/table2_tuned/ml-100k-kg   # keep
    python scripts/keep_records.py docs/records/table2_tuned outputs/sweeps/table2_tuned   # restore
    python scripts/keep_records.py outputs/tune/ml-100k-kg/kgrec docs/records/tune/ml-100k-kg/kgrec

Why: a table in docs/ is generated from run records (``slifmr.report``), and its paired p-values
from each run's per-user test values. Run directories live under ``outputs/`` (not committed) and
hold checkpoints of up to a GB; a machine that is reset loses them, and with them the only way
to rebuild or extend the table. This keeps, per finished run, ``record.json``, the per-user file
it names and the composed config (``.hydra/config.yaml``, ``.hydra/overrides.yaml``): about
130 kB a run. For a search directory it also keeps ``study.db`` (Optuna's journal: a search
restored from it resumes where it stopped), ``best.yaml`` and ``summary.json``.

``slifmr.report docs/records/<study>`` and ``scripts/build_docs.py --sweeps docs/records`` read the
kept copy as they read ``outputs/sweeps``; a restored study directory lets a re-run grid
(``skip_completed=true``) skip every kept run. A run directory without a completed record (a
killed job) is skipped. Files are written to a temporary name and renamed; an identical file
is left alone, so keeping twice changes nothing.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

from slifmr.records import RECORD_FILE, atomic_write_bytes, read_finished_record
from slifmr.tune.search import BEST_FILE, STUDY_DB, SUMMARY_FILE

RUN_FILES = (".hydra/config.yaml", ".hydra/overrides.yaml")  # kept beside a finished record
SEARCH_FILES = (STUDY_DB, BEST_FILE, SUMMARY_FILE)           # kept wherever they are found


def files_to_keep(src: Path) -> list[Path]:
    """The paths under ``src`` (relative to it) worth keeping, sorted."""
    keep: list[Path] = []
    for dirpath, _, filenames in os.walk(src):
        here = Path(dirpath)
        keep += [here / f for f in filenames if f in SEARCH_FILES]
        if RECORD_FILE not in filenames:
            continue
        record = read_finished_record(here)
        if record is None:  # a killed or unfinished run: nothing to rebuild a table from
            continue
        keep.append(here / RECORD_FILE)
        per_user = (record.get("per_user_test") or {}).get("file")
        keep += [here / p for p in (*RUN_FILES, *([per_user] if per_user else [])) if (here / p).is_file()]
    return sorted(p.relative_to(src) for p in keep)


def _snapshot(path: Path) -> bytes:
    """The file's bytes; a search journal through SQLite (``serialize``: one consistent read, so a
    search writing meanwhile cannot leave a torn copy; byte for byte the file when it is idle)."""
    if path.name != STUDY_DB:
        return path.read_bytes()
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
        return con.serialize()


def keep(src: Path, dst: Path) -> tuple[int, int]:
    """Copy ``files_to_keep(src)`` to ``dst``; returns (files written, files already identical)."""
    if not src.is_dir():
        raise SystemExit(f"keep_records: no such directory: {src}")
    written = same = 0
    for rel in files_to_keep(src):
        target = dst / rel
        if target.is_file() and filecmp.cmp(src / rel, target, shallow=False):
            same += 1
            continue
        atomic_write_bytes(target, _snapshot(src / rel))
        written += 1
    return written, same


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="a study or search directory (or a kept copy, to restore it)")
    ap.add_argument("dst", type=Path, help="where the kept files go (created)")
    a = ap.parse_args(argv)
    written, same = keep(a.src, a.dst)
    print(f"{a.src} -> {a.dst}: {written} file(s) written, {same} already identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())

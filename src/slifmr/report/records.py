"""Reading result records (``record.json`` + the per-user sidecar) for the report. Records are
written by the run-record callback (``callbacks/run_record.py``) in the format of
:mod:`slifmr.records`; this package only reads them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from slifmr.records import PER_USER_FILE, RECORD_FILE, SCHEMA  # noqa: F401 - re-exported for readers


class ReportError(ValueError):
    """Bad input to the report: no records, unreadable records, unknown metrics."""


def load_records(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every record under the given run/multirun directories (or record files), each with
    ``_path`` (the record file) added. A path without any record is an error that names it."""
    out: list[dict[str, Any]] = []
    seen: set[Path] = set()
    for p in map(Path, paths):
        if p.is_file():
            files = [p]
        elif p.is_dir():
            files = sorted(p.rglob(RECORD_FILE))
        else:
            raise ReportError(f"no such file or directory: {p}")
        if not files:
            raise ReportError(f"no result records ({RECORD_FILE}) under {p}: is it a run or multirun "
                              f"directory of a run that finished? (records are written after the test)")
        for f in files:
            f = f.resolve()
            if f in seen:
                continue
            seen.add(f)
            try:
                rec = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise ReportError(f"unreadable result record {f}: {e}") from e
            if not str(rec.get("schema", "")).startswith("slifmr.record/"):
                raise ReportError(f"{f} is not a slifmr result record (schema={rec.get('schema')!r})")
            rec["_path"] = str(f)
            out.append(rec)
    return out


def load_per_user(record: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """The per-user test values of a loaded record, or None if it has none."""
    info = record.get("per_user_test")
    if not info:
        return None
    path = Path(record["_path"]).parent / info["file"]
    if not path.exists():
        raise ReportError(f"record {record['_path']} names per-user values {path}, which are missing")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}

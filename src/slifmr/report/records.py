"""Reading result records (``record.json`` + the per-user sidecar) for the report. Records are
written by the run-record callback (``callbacks/run_record.py``) in the format of
:mod:`slifmr.records`; this package only reads them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from slifmr.records import PER_USER_FILE, RECORD_FILE, SCHEMA  # noqa: F401 - re-exported for readers


class ReportError(ValueError):
    """Bad input to the report: no records, unreadable records, unknown metrics."""


def iter_record_files(root: Path) -> Iterator[Path]:
    """The record files under ``root`` as they are found, following symlinked directories (a study
    directory may gather runs kept elsewhere by symlink, e.g. tuned and default runs side by side);
    a directory reached twice (a link cycle or two links to one place) is walked once."""
    visited: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in visited:
            dirnames[:] = []
            continue
        visited.add(real)
        if RECORD_FILE in filenames:
            yield Path(dirpath) / RECORD_FILE


def load_records(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every record under the given run/multirun directories (or record files), each with
    ``_path`` (the record file) added. A path without any record is an error that names it."""
    out: list[dict[str, Any]] = []
    seen: set[Path] = set()
    for p in map(Path, paths):
        if p.is_file():
            files = [p]
        elif p.is_dir():
            files = sorted(iter_record_files(p))
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
    """The per-user test values of a loaded record, or None if it has none; read once per record
    (a report tests each row against several others, per metric), kept on the record as ``_per_user``."""
    if "_per_user" in record:
        return record["_per_user"]
    info = record.get("per_user_test")
    if not info:
        return None
    path = Path(record["_path"]).parent / info["file"]
    if not path.exists():
        raise ReportError(f"record {record['_path']} names per-user values {path}, which are missing")
    with np.load(path) as z:
        record["_per_user"] = {k: z[k] for k in z.files}
    return record["_per_user"]


SUMMARY_SCHEMA = "slifmr.record.summary/1"  # a row of a committed results.csv / interval.csv, not a run


def _num(text: str, where: str) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise ReportError(f"{where}: '{text}' is not a number") from None


def records_from_csv(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Summary records from a report's own tables, for re-plotting a study whose run records are
    gone: ``results.csv`` (model, variant, ``<dataset>/<metric>/{mean,std,n}``) gives one record
    per (row, dataset) with runs; ``interval.csv`` (line, interval, n, fit_s_*, ``<metric>_*``)
    one per (line, interval). Each carries ``test`` (the means) and ``summary`` ({metric: {"std",
    "n"}}, ``fit_s``), which the plots use instead of recomputing a spread over seeds. No per-user
    values, so no p-values: tables stay the ones committed beside the CSV."""
    import csv

    out: list[dict[str, Any]] = []
    for path in map(Path, paths):
        try:
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))
        except OSError as e:
            raise ReportError(f"cannot read {path}: {e}") from e
        head = list(rows[0]) if rows else []
        if {"model", "variant"} <= set(head):
            out += _from_results_csv(path, rows, head)
        elif {"line", "interval", "fit_s_mean"} <= set(head):
            out += _from_interval_csv(path, rows, head)
        else:
            raise ReportError(f"{path}: not a slifmr.report results.csv (model, variant, <dataset>/<metric>/mean ...) "
                              f"nor interval.csv (line, interval, fit_s_mean ...); header: {', '.join(head) or 'empty'}")
    if not out:
        raise ReportError(f"no rows with results in {', '.join(map(str, paths))}")
    return out


def _from_results_csv(path: Path, rows: list[dict[str, str]], head: list[str]) -> list[dict[str, Any]]:
    cols = [c.split("/") for c in head if c.count("/") >= 2 and c.endswith("/mean")]
    pairs = [("/".join(c[:-2]), c[-2]) for c in cols]  # (dataset, metric); a dataset name may hold '/'
    out = []
    for line, row in enumerate(rows, start=2):
        by_ds: dict[str, dict[str, Any]] = {}
        for ds, m in pairs:
            where = f"{path} line {line}, column {ds}/{m}"
            mean = _num(row.get(f"{ds}/{m}/mean"), where + "/mean")
            if mean is None:
                continue
            rec = by_ds.setdefault(ds, {"schema": SUMMARY_SCHEMA, "model": row["model"], "dataset": ds,
                                        "overrides": (row.get("variant") or "").split(), "seed": None,
                                        "test": {}, "summary": {}, "_path": f"{path}:{line}"})
            n = _num(row.get(f"{ds}/{m}/n"), where + "/n")
            rec["test"][m] = mean
            rec["summary"][m] = {"std": _num(row.get(f"{ds}/{m}/std"), where + "/std") or 0.0,
                                 "n": int(n) if n is not None else 1}
        out += list(by_ds.values())
    return out


def _from_interval_csv(path: Path, rows: list[dict[str, str]], head: list[str]) -> list[dict[str, Any]]:
    from slifmr.report.aggregate import MODEL_NAMES

    by_name = {v: k for k, v in MODEL_NAMES.items()}
    metrics = [c[: -len("_mean")] for c in head if c.endswith("_mean") and "@" in c]
    out = []
    for line, row in enumerate(rows, start=2):
        where = f"{path} line {line}"
        parts = [p.strip() for p in row["line"].split(",")]  # "dataset[, Model][, overrides]"
        model = by_name.get(parts[1], "slifmr") if len(parts) > 1 else "slifmr"
        n = int(_num(row.get("n"), where + ", column n") or 1)
        rec = {"schema": SUMMARY_SCHEMA, "model": model, "dataset": parts[0], "seed": None,
               "overrides": [f"model.self_loop.interval={int(_num(row['interval'], where + ', column interval'))}"],
               "time_s": {"fit": _num(row["fit_s_mean"], where + ", column fit_s_mean")},
               "epochs": _num(row.get("epochs_mean"), where + ", column epochs_mean"),
               "test": {}, "summary": {"fit_s": {"std": _num(row.get("fit_s_std"), where) or 0.0, "n": n}},
               "_path": f"{path}:{line}"}
        for m in metrics:
            mean = _num(row.get(f"{m}_mean"), f"{where}, column {m}_mean")
            if mean is not None:
                rec["test"][m] = mean
                rec["summary"][m] = {"std": _num(row.get(f"{m}_std"), f"{where}, column {m}_std") or 0.0, "n": n}
        out.append(rec)
    return out

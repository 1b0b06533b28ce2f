"""Tables: CSV (numbers, for other tools) and Markdown (for people), rows = model/variant,
columns = dataset x metric, cells = mean ± std over seeds, then %Imp and p rows."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from slifmr.report.aggregate import Comparison, Table, metric_label
from slifmr.records import atomic_write_bytes
from slifmr.report.significance import POOLING


def _num(x: float) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))


def fmt_cell(mean: float, std: float, digits: int = 4) -> str:
    """'0.3297 ± 0.0083'; just the mean with one seed (no std to show)."""
    if math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt_p(p: float) -> str:
    if p is None or math.isnan(p):
        return "n/a"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def results_csv(table: Table) -> str:
    """Wide CSV: model, variant, label, then <dataset>/<metric>/{mean,std,n} per column."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = [(d, m) for d in table.datasets for m in table.metrics]
    w.writerow(["model", "variant", "label"] + [f"{d}/{m}/{s}" for d, m in cols for s in ("mean", "std", "n")])
    for row in table.rows:
        cells = []
        for d, m in cols:
            st = table.get(row, d, m)
            cells += ["", "", 0] if st is None else [_num(st.mean), _num(st.std), st.n]
        w.writerow([row.model, row.variant, row.label] + cells)
    return buf.getvalue()


def comparisons_csv(comps: list[Comparison]) -> str:
    """Long CSV: one line per (dataset, metric, ours row) with %Imp and the paired test."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["dataset", "metric", "ours", "baseline", "ours_mean", "baseline_mean", "imp_pct", "test",
                "p_value", "n_users", "pooling"])
    for c in comps:
        w.writerow([c.dataset, c.metric, c.ours.label, c.baseline.label, _num(c.ours_mean), _num(c.baseline_mean),
                    _num(c.imp_pct), c.test, _num(c.p_value), c.n_users, POOLING])
    return buf.getvalue()


def _rank_marks(table: Table, dataset: str, metric: str) -> dict:
    """Best row bold, second best underlined (as in the paper's Table II)."""
    means = sorted(((st.mean, row) for row in table.rows if (st := table.get(row, dataset, metric)) is not None
                    and not math.isnan(st.mean)), key=lambda t: -t[0])
    marks = {}
    if means:
        marks[means[0][1]] = ("**", "**")
    if len(means) > 1 and means[1][0] < means[0][0]:
        marks[means[1][1]] = ("<u>", "</u>")
    return marks


def results_markdown(table: Table, comps: list[Comparison], n_records: int, fixed_baseline: bool = False) -> str:
    """The main table with %Imp / p rows under it, and a notes paragraph saying how it was made."""
    cols = [(d, m) for d in table.datasets for m in table.metrics]
    multi_ds = len(table.datasets) > 1
    head = [f"{d} {metric_label(m)}" if multi_ds else metric_label(m) for d, m in cols]
    lines = ["| model | n | " + " | ".join(head) + " |", "|---|---|" + "---|" * len(cols)]
    marks = {(d, m): _rank_marks(table, d, m) for d, m in cols}
    for row in table.rows:
        ns = {st.n for d, m in cols if (st := table.get(row, d, m)) is not None}
        cells = []
        for d, m in cols:
            st = table.get(row, d, m)
            if st is None:
                cells.append("")
                continue
            a, b = marks[(d, m)].get(row, ("", ""))
            cells.append(f"{a}{fmt_cell(st.mean, st.std)}{b}")
        n = "/".join(str(x) for x in sorted(ns))
        lines.append(f"| {row.label} | {n} | " + " | ".join(cells) + " |")
    ours_rows = [r for r in table.rows if table.is_ours(r)]
    by_key = {(c.ours, c.dataset, c.metric): c for c in comps}
    for row in ours_rows:
        if not any((row, d, m) in by_key for d, m in cols):
            continue  # nothing to compare this row with (e.g. a study of SLIF-MR variants only)
        suffix = f" ({row.variant})" if len(ours_rows) > 1 and row.variant else ""
        imp, ps = [], []
        for d, m in cols:
            c = by_key.get((row, d, m))
            imp.append("" if c is None else f"{c.imp_pct:+.2f}%")
            ps.append("" if c is None else fmt_p(c.p_value))
        lines.append(f"| %Imp{suffix} | | " + " | ".join(imp) + " |")
        lines.append(f"| p{suffix} | | " + " | ".join(ps) + " |")
    notes = [
        "",
        f"Test metrics, mean ± std (sample std) over seeds; n = runs per cell; {n_records} records. "
        "Best per column in bold, second underlined.",
    ]
    if comps:
        bases = sorted({(c.dataset, metric_label(c.metric), c.baseline.label) for c in comps})
        tests = sorted({c.test for c in comps if c.test}) or ["none (no per-user values)"]
        which = "baseline (fixed)" if fixed_baseline else "best baseline"
        notes.append(
            f"%Imp = (ours - baseline) / baseline x 100, per column; {which}: "
            + "; ".join(f"{d} {m}: {b}" for d, m, b in bases) + ". "
            + f"p: {', '.join(tests)} over per-user test values ({POOLING}).")
    elif ours_rows:
        notes.append("No %Imp: no baseline rows in these records.")
    repeated = table.repeated_seeds()
    if repeated:
        notes.append("**Warning**: a seed counted more than once in " + "; ".join(repeated) + ".")
    if table.common:
        notes.append("Common to all runs: " + " ".join(f"`{k}={v}`" for k, v in sorted(table.common.items())) + ".")
    return "\n".join(lines + notes) + "\n"


def write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())

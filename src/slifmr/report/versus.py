"""Each model's variant rows against the same model's default row: the change and a paired test.

Table II's %Imp compares *ours* with the best baseline; tuning asks another question, per model:
did the tuned point (a row with a variant, e.g. ``tuned=cpu12``) beat the model's own defaults (its
row without a variant) on test, and is the difference more than seed noise? Each (model, dataset,
metric) with both rows gets the two means, ``change = (variant - default) / default x 100`` and the
paired test over per-user test values (:func:`slifmr.report.significance.compare_rows`: per-user
mean over each row's seeds, users paired by id).

Beside the test columns each pair gets the rows' *validation* score, the metric the runs were
selected on (the record's ``monitor``, at its best epoch), averaged over the same seeds. A search
picks its point on one seed per trial, so its gain over the defaults is partly seed noise; the
seed-averaged validation says, without looking at test, whether the selected point is better on
the selection data at all."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

from slifmr.records import monitored_value
from slifmr.report.aggregate import MODEL_NAMES, Table, metric_label, variant_label
from slifmr.report.significance import compare_rows
from slifmr.report.tables import fmt_cell, fmt_p


@dataclass
class VersusCell:
    """One (model, dataset, metric): the default row against one variant row of the same model."""

    model: str
    dataset: str
    variant: str
    metric: str
    default_mean: float
    default_std: float
    default_n: int
    variant_mean: float
    variant_std: float
    variant_n: int
    change_pct: float
    test: str = ""
    p_value: float = math.nan
    n_users: int = 0
    monitor: str = ""
    default_valid: float = math.nan
    variant_valid: float = math.nan


def mean_valid(records: list[dict]) -> tuple[str, float]:
    """(monitor, mean over records of their best-epoch validation score); ('', nan) when the records
    name no monitor, or different ones (their scores would not be one quantity)."""
    monitors = {r.get("monitor") for r in records}
    if len(monitors) != 1 or not next(iter(monitors)):
        return "", math.nan
    monitor = next(iter(monitors))
    vals = [monitored_value(r, monitor) for r in records]
    return (monitor, math.nan) if None in vals else (monitor, sum(vals) / len(vals))


def versus_default(table: Table, method: str = "auto") -> list[VersusCell]:
    """Every variant row against its model's default row, per dataset and metric, where both ran."""
    defaults = {row.model: row for row in table.rows if not row.variant}
    out = []
    for row in table.rows:
        base = defaults.get(row.model)
        if not row.variant or base is None:
            continue
        for dataset in table.datasets:
            for metric in table.metrics:
                a, b = table.get(row, dataset, metric), table.get(base, dataset, metric)
                if a is None or b is None or not a.values or not b.values:
                    continue
                change = (a.mean - b.mean) / b.mean * 100 if b.mean else math.nan
                cell = VersusCell(row.model, dataset, row.variant, metric, b.mean, b.std, b.n, a.mean, a.std, a.n,
                                  change)
                cell.test, cell.p_value, cell.n_users = compare_rows(a.records, b.records, metric, method)
                mon_b, cell.default_valid = mean_valid(b.records)
                mon_a, cell.variant_valid = mean_valid(a.records)
                cell.monitor = mon_a if mon_a == mon_b else ""
                if not cell.monitor:
                    cell.default_valid = cell.variant_valid = math.nan
                out.append(cell)
    return out


def versus_markdown(cells: list[VersusCell]) -> str:
    """One line per (model, variant, dataset), the metrics side by side; empty when nothing pairs."""
    if not cells:
        return ""
    metrics = list(dict.fromkeys(c.metric for c in cells))
    monitors = {c.monitor for c in cells if c.monitor}
    valid_head = f"valid {metric_label(monitors.pop().removeprefix('val/'))}" if len(monitors) == 1 else "valid"
    head = (f"| model | dataset | variant | n (default / variant) | {valid_head} default | {valid_head} variant | "
            + " | ".join(f"{metric_label(m)} default | {metric_label(m)} variant | change | p" for m in metrics) + " |")
    lines = [head, "|" + "---|" * (6 + 4 * len(metrics))]
    groups: dict[tuple[str, str, str], dict[str, VersusCell]] = {}
    for c in cells:
        groups.setdefault((c.model, c.variant, c.dataset), {})[c.metric] = c
    for (model, variant, dataset), by_metric in groups.items():
        first = next(iter(by_metric.values()))
        parts = [MODEL_NAMES.get(model, model), dataset, variant_label(variant),
                 f"{first.default_n} / {first.variant_n}", _fmt_valid(first.default_valid),
                 _fmt_valid(first.variant_valid)]
        for m in metrics:
            c = by_metric.get(m)
            parts += (["", "", "", ""] if c is None else
                      [fmt_cell(c.default_mean, c.default_std), fmt_cell(c.variant_mean, c.variant_std),
                       f"{c.change_pct:+.2f}%", fmt_p(c.p_value)])
        lines.append("| " + " | ".join(parts) + " |")
    test = next((c.test for c in cells if c.test), "")
    lines.append("")
    lines.append("Each variant row against the same model's default row (no variant), test metrics, mean ± std "
                 "over seeds; change = (variant - default) / default x 100; p: "
                 + (f"{test} over per-user test values (per-user mean over each row's seeds, users paired by id)."
                    if test else "no per-user values in these records.")
                 + " valid: the validation score each row's runs were selected on (best epoch), mean over the same "
                   "seeds; a variant chosen by a one-seed search that is not above its default here gained on "
                   "seed noise, not on the selection data.")
    return "\n".join(lines) + "\n"


def _fmt_valid(v: float) -> str:
    return "" if math.isnan(v) else f"{v:.4f}"


def versus_csv(cells: list[VersusCell]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    fields = list(VersusCell.__dataclass_fields__)
    w.writerow(fields)
    for c in cells:
        w.writerow([getattr(c, f) for f in fields])
    return buf.getvalue()


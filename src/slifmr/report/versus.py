"""Each model's variant rows against the same model's default row: the change and a paired test.

Table II's %Imp compares *ours* with the best baseline; tuning asks another question, per model:
did the tuned point (a row with a variant, e.g. ``tuned=cpu12``) beat the model's own defaults (its
row without a variant) on test, and is the difference more than seed noise? Each (model, dataset,
metric) with both rows gets the two means, ``change = (variant - default) / default x 100`` and the
paired test over per-user test values (:func:`slifmr.report.significance.compare_rows`: per-user
mean over each row's seeds, users paired by id)."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

from slifmr.report.aggregate import MODEL_NAMES, Table, metric_label
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
                out.append(cell)
    return out


def versus_markdown(cells: list[VersusCell]) -> str:
    """One line per (model, variant, dataset), the metrics side by side; empty when nothing pairs."""
    if not cells:
        return ""
    metrics = list(dict.fromkeys(c.metric for c in cells))
    head = "| model | dataset | variant | n (default / variant) | " + " | ".join(
        f"{metric_label(m)} default | {metric_label(m)} variant | change | p" for m in metrics) + " |"
    lines = [head, "|" + "---|" * (4 + 4 * len(metrics))]
    groups: dict[tuple[str, str, str], dict[str, VersusCell]] = {}
    for c in cells:
        groups.setdefault((c.model, c.variant, c.dataset), {})[c.metric] = c
    for (model, variant, dataset), by_metric in groups.items():
        first = next(iter(by_metric.values()))
        parts = [MODEL_NAMES.get(model, model), dataset, variant, f"{first.default_n} / {first.variant_n}"]
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
                    if test else "no per-user values in these records."))
    return "\n".join(lines) + "\n"


def versus_csv(cells: list[VersusCell]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    fields = list(VersusCell.__dataclass_fields__)
    w.writerow(fields)
    for c in cells:
        w.writerow([getattr(c, f) for f in fields])
    return buf.getvalue()


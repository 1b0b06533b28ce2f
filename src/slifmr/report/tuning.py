"""How each row's settings were chosen: tuned (which set, budget, the validation score it was
selected on) or default. Read from the ``tuned`` node a run's record keeps (``slifmr.tune.points``
writes it when a run is made with ``tuned=<set>``); a record without it ran at its defaults."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from slifmr.report.aggregate import Row, Table, metric_label


@dataclass(frozen=True)
class Tuning:
    """One (row, dataset): how its runs were configured."""

    row: Row
    dataset: str
    status: str  # tuned | default | mixed
    name: str = ""  # the tuned set
    trials: int | None = None  # the search's budget
    monitor: str = ""
    valid: float | None = None  # the validation score the point was selected on
    default_valid: float | None = None  # the defaults' validation score in the same search (trial 0)

    @property
    def label(self) -> str:  # with the keys (CSV)
        return self.row.label

    @property
    def settings(self) -> str:
        if self.status == "tuned":
            return f"tuned ({self.name})"
        return "mixed: " + self.name if self.status == "mixed" else "default" + (f" ({self.name})" if self.name else "")


def _of(record: dict[str, Any]) -> tuple:
    t = (record.get("config") or {}).get("tuned") or {}
    if t.get("status") != "tuned":
        return ("default", "nothing to tune" if t.get("status") == "default" else "", None, "", None, None)
    return ("tuned", str(t.get("name", "")), t.get("trials"), str(t.get("monitor") or ""), t.get("valid"),
            t.get("default_valid"))


def tuning_rows(table: Table) -> list[Tuning]:
    """One entry per (row, dataset) cell of the table, in the table's order."""
    out = []
    metric = table.metrics[0]
    for row in table.rows:
        for ds in table.datasets:
            st = table.get(row, ds, metric)
            if st is None:
                continue
            points = [_of(r) for r in st.records]
            kinds = {p[:5] for p in points}  # the point's identity
            if len(kinds) > 1:
                names = sorted({k[1] or k[0] for k in kinds})
                out.append(Tuning(row, ds, "mixed", ", ".join(names)))
                continue
            # the defaults' score is about the search, not the point: a search summarised again (e.g.
            # after a killed trial 0 was re-run) may have filled it in between two seeds of one row
            defaults = {p[5] for p in points} - {None}
            status, name, trials, monitor, valid = kinds.pop()
            default_valid = defaults.pop() if len(defaults) == 1 else None
            out.append(Tuning(row, ds, status, name, trials, monitor, valid, default_valid))
    return out


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.4f}"


def tuning_markdown(rows: list[Tuning]) -> str:
    if not any(r.status != "default" for r in rows):
        return "\nSettings: every row ran at its config defaults (no `tuned=` set; none tuned).\n"
    monitors = sorted({r.monitor for r in rows if r.monitor}) or ["val/recall@20"]
    sel = " / ".join(metric_label(m.removeprefix("val/")) for m in monitors)
    lines = ["", "How each row's settings were chosen (`tuned=<set>`: the point a validation-only search selected; "
             "trials = its budget):", "",
             f"| model | dataset | settings | trials | selected on (valid {sel}) | defaults' valid |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.row.display} | {r.dataset} | {r.settings} | {'' if r.trials is None else r.trials} | "
                     f"{_num(r.valid)} | {_num(r.default_valid)} |")
    return "\n".join(lines) + "\n"


def tuning_csv(rows: list[Tuning]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["label", "dataset", "status", "set", "trials", "monitor", "valid", "default_valid"])
    for r in rows:
        w.writerow([r.label, r.dataset, r.status, r.name, "" if r.trials is None else r.trials, r.monitor,
                    "" if r.valid is None else repr(r.valid), "" if r.default_valid is None else repr(r.default_valid)])
    return buf.getvalue()

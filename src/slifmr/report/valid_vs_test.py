"""Does validation rank a tuned point against the defaults the way test does?

    python -m slifmr.report.valid_vs_test docs/studies/table2_tuned_vs_default/summary/versus_default.csv \
        [more versus CSVs] [--tune-root docs/tuning] [--threshold 1]

Each tuned-against-default pair (a row of a ``versus_default.csv`` that ``slifmr.report
--versus-default`` writes) carries three changes of the tuned point over the model's defaults:

- the search's own, one seed per point (``summary.json``: the best trial against the defaults'
  trial, what the search selected on);
- validation averaged over the re-runs' seeds (the CSV's ``default_valid`` / ``variant_valid``);
- test over the same seeds (the CSV's ``change_pct``).

Why it exists: tuning.md's claim "validation agrees with test once seeds are averaged; the one-seed
search does not" is a property of these numbers, so it is computed from them, never typed. A
change counts as *clear* beyond ``threshold`` per cent; two changes agree when they have the same
sign. Every pair where either change is clear is checked.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slifmr.report.aggregate import MODEL_NAMES, MODEL_ORDER
from slifmr.report.tables import fmt_p
from slifmr.tune.summary import moved_params, read_summaries


class ValidVsTestError(ValueError):
    """A versus CSV or search summary that does not say what the comparison needs."""


@dataclass
class Pair:
    """One model on one dataset: the tuned point's change over its defaults, three ways (per cent)."""

    model: str
    dataset: str
    search: float | None  # one seed per point (the search); None: no search summary found
    valid: float  # mean over the re-runs' seeds
    test: float  # same seeds, the versus CSV's change_pct
    p_value: float
    seeds: str  # "default n / tuned n"
    kept: bool = False  # the search selected the defaults: tuned and default differ only in seeds


def _pct(new: float, old: float) -> float:
    return (new - old) / old * 100.0


def kept_defaults(summary: dict[str, Any]) -> bool:
    """Whether the search selected the defaults' point (no key moved; the tuning table's 'defaults')."""
    default = summary.get("default") or {}
    return bool(summary.get("best")) and default.get("params") is not None and not moved_params(summary["best"], default)


def search_change(summary: dict[str, Any]) -> float | None:
    """The selected trial's validation score against the defaults' trial, in per cent (None when
    the search has no finished defaults' trial or no completed one)."""
    default = summary.get("default") or {}
    if default.get("value") is None or not summary.get("best"):
        return None
    return _pct(float(summary["best"]["value"]), float(default["value"]))


def read_pairs(versus_csvs: list[Path], tune_root: Path, metric: str = "recall@20") -> list[Pair]:
    """The pairs of ``metric`` in ``versus_csvs`` whose rows differ (a model with nothing to tune,
    Pop, has the same runs on both sides and is left out), each with its search's one-seed change
    from ``tune_root/<dataset>/<model>/summary.json``. Table II's model order, dataset first."""
    searches = {(s["dataset"], s["model"]): s for s in read_summaries(tune_root)}
    pairs = []
    for path in versus_csvs:
        if not path.is_file():
            raise ValidVsTestError(f"{path}: no such versus CSV (build its section with versus=1 first)")
        with path.open(newline="", encoding="utf-8") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                if row.get("metric") != metric:
                    continue
                try:
                    dv, tv = float(row["default_valid"]), float(row["variant_valid"])
                    change, p = float(row["change_pct"]), float(row["p_value"])
                    dm, tm = float(row["default_mean"]), float(row["variant_mean"])
                    seeds = f"{int(row['default_n'])} / {int(row['variant_n'])}"
                except (KeyError, TypeError, ValueError) as e:
                    raise ValidVsTestError(f"{path}, line {line}: a missing or non-numeric field ({e})") from e
                if dv == tv and dm == tm:  # the same runs on both sides: nothing was tuned
                    continue
                s = searches.get((row["dataset"], row["model"]))
                pairs.append(Pair(row["model"], row["dataset"], search_change(s) if s else None,
                                  _pct(tv, dv), change, p, seeds, kept=bool(s) and kept_defaults(s)))
    order = {m: i for i, m in enumerate(MODEL_ORDER)}
    return sorted(pairs, key=lambda q: (q.dataset, order.get(q.model, len(order)), q.model))


@dataclass
class Agreement:
    """How often one change has the sign of test, over the pairs where either is clear."""

    agree: int
    checked: int
    disagree: list[Pair]
    largest_gap: float  # max |change - test| over every pair with the change, points
    largest_gap_pair: Pair | None


def agreement(pairs: list[Pair], which: str, threshold: float = 1.0) -> Agreement:
    """``which`` ("valid" or "search") against test: same sign wherever either is beyond
    ``threshold`` per cent, and the largest gap in points. For "search", a pair whose search kept
    the defaults is left out: its change is 0 by construction, and its test change is seed noise."""
    agree, checked, bad, gap, gap_pair = 0, 0, [], 0.0, None
    for q in pairs:
        v = getattr(q, which)
        if v is None or (which == "search" and q.kept):
            continue
        if abs(v - q.test) > gap:
            gap, gap_pair = abs(v - q.test), q
        if abs(v) > threshold or abs(q.test) > threshold:
            checked += 1
            if (v > 0) == (q.test > 0) and v != 0 and q.test != 0:
                agree += 1
            else:
                bad.append(q)
    return Agreement(agree, checked, bad, gap, gap_pair)


def _signed(v: float | None) -> str:
    return "" if v is None else f"{v:+.1f} %"


def _name(q: Pair) -> str:
    return f"{MODEL_NAMES.get(q.model, q.model)}, {q.dataset}"


def _line(label: str, a: Agreement, threshold: float) -> str:
    bad = "; ".join(f"{_name(q)}" for q in a.disagree)
    gap = f"largest gap {a.largest_gap:.1f} points ({_name(a.largest_gap_pair)})" if a.largest_gap_pair else ""
    return (f"- {label}: same sign as test in **{a.agree} of {a.checked}** pairs where either is beyond "
            f"{threshold:g} %{' (not: ' + bad + ')' if bad else ''}; {gap}.")


def markdown(pairs: list[Pair], threshold: float = 1.0) -> str:
    """The pairs' table and the two agreement lines (seed-averaged validation, one-seed search)."""
    if not pairs:
        return "(no tuned-against-default pairs)\n"
    lines = ["| tuned against default | seeds (default / tuned) | valid, 1 seed each (the search) "
             "| valid, mean of the re-runs' seeds | test, same seeds | p (test) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for q in pairs:
        search = "defaults kept" if q.kept else _signed(q.search)
        lines.append(f"| {_name(q)} | {q.seeds} | {search} | {_signed(q.valid)} | "
                     f"{_signed(q.test)} | {fmt_p(q.p_value)} |")
    lines += ["", _line("Validation, mean of the re-runs' seeds", agreement(pairs, "valid", threshold), threshold),
              _line("The search's one-seed change (where it moved from the defaults)",
                    agreement(pairs, "search", threshold), threshold)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", type=Path, nargs="+", help="versus_default.csv files (slifmr.report --versus-default)")
    ap.add_argument("--tune-root", type=Path, default=Path("docs/tuning"),
                    help="the search summaries, <root>/<dataset>/<model>/summary.json")
    ap.add_argument("--metric", default="recall@20")
    ap.add_argument("--threshold", type=float, default=1.0, help="a change is clear beyond this many per cent")
    args = ap.parse_args(argv)
    try:
        pairs = read_pairs(args.csv, args.tune_root, args.metric)
    except ValueError as e:  # ValidVsTestError, or a search summary that is not one
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(markdown(pairs, args.threshold))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


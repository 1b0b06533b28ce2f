"""``python -m slifmr.tune.summary <root> [--dataset D]``: one Markdown table of the searches under
``<root>/<dataset>/<model>/summary.json`` (what ``python -m slifmr.tune`` writes), so a study's
budget, default-vs-tuned validation scores and the pruner's saving are read from the searches,
never typed. Validation numbers only: a search never sees the test split.

Columns: trials (complete / pruned; a repeated point counts but is not retrained; failed trials
do not count), the defaults' validation score
(trial 0), the tuned score and its change, the tuned point (only the keys that differ from the
defaults), the tuned trial's best epoch, epochs trained, epochs the pruner saved (the rule is
``summary.json``'s ``epochs_saved_rule``) and the trials' summed time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from slifmr.report.aggregate import MODEL_NAMES, MODEL_ORDER
from slifmr.tune.search import SUMMARY_FILE


class SummaryError(ValueError):
    """A search summary that is missing or does not say what the table needs."""


def read_summaries(root: Path, dataset: str | None = None) -> list[dict[str, Any]]:
    """Every ``summary.json`` under ``root`` (``<dataset>/<model>/``), in Table II's model order."""
    pattern = f"{dataset}/*/{SUMMARY_FILE}" if dataset else f"*/*/{SUMMARY_FILE}"
    out = []
    for path in sorted(Path(root).glob(pattern)):
        try:
            s = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise SummaryError(f"{path}: not valid JSON: {e}") from e
        for key in ("model", "dataset", "trials", "completed", "pruned", "best"):
            if key not in s:
                raise SummaryError(f"{path}: field '{key}' is missing (not a slifmr.tune summary?)")
        s["_path"] = str(path)
        out.append(s)
    order = {m: i for i, m in enumerate(MODEL_ORDER)}
    return sorted(out, key=lambda s: (s["dataset"], order.get(s["model"], len(order)), s["model"]))


def _num(v: Any) -> str:
    """A config value as a reader writes it: 0.001 -> 1e-3, 0.5 -> 0.5, 3 -> 3."""
    if isinstance(v, float):
        if v != 0 and (abs(v) < 0.01 or abs(v) >= 1e4):
            mant, exp = f"{v:.0e}".split("e")
            return f"{mant}e{int(exp)}"
        return f"{v:g}"
    return str(v)


def moved_params(best: dict[str, Any], default: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """The tuned point's (key, value) pairs that differ from the defaults' trial; [] when the
    search kept the defaults."""
    base = (default or {}).get("params") or {}
    return [(k, v) for k, v in (best.get("params") or {}).items() if k not in base or base[k] != v]


def changed_params(best: dict[str, Any], default: dict[str, Any] | None) -> str:
    """The tuned point's keys whose value differs from the defaults' trial ('defaults' if none)."""
    diff = moved_params(best, default)
    if not diff:
        return "defaults"
    return ", ".join(f"{k.removeprefix('model.')} {_num(v)}" for k, v in diff)


def summary_row(s: dict[str, Any]) -> dict[str, Any]:
    """The table's cells of one search, as numbers (None where the search does not say)."""
    best, default = s.get("best"), s.get("default")
    d_val = (default or {}).get("value") if (default or {}).get("is_model_default", True) else None
    t_val = best["value"] if best else None
    return {
        "model": s["model"], "dataset": s["dataset"], "trials": s["trials"], "budget": s.get("budget"),
        "completed": s["completed"], "pruned": s["pruned"], "duplicates": s.get("duplicates", 0),
        "failed": s.get("failed", 0), "default_valid": d_val, "tuned_valid": t_val,
        "change": (t_val / d_val - 1.0) if (t_val is not None and d_val) else None,
        "point": changed_params(best, default) if best else "(no complete trial)",
        "best_epoch": (best or {}).get("best_epoch"), "epochs_run": s.get("epochs_run"),
        "epochs_saved": s.get("epochs_saved_by_pruning"), "trial_seconds": s.get("trial_seconds"),
        "confirm_seeds": (s.get("confirm") or {}).get("seeds"),
    }


def _f4(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def markdown(summaries: list[dict[str, Any]]) -> str:
    """One table per dataset, plus the totals line that states the budget."""
    if not summaries:
        raise SummaryError("no search summaries to tabulate")
    lines: list[str] = []
    for ds in dict.fromkeys(s["dataset"] for s in summaries):
        rows = [summary_row(s) for s in summaries if s["dataset"] == ds]
        budgets = sorted({r["budget"] for r in rows if r["budget"] is not None})
        lines += [f"**{ds}**: {len(rows)} searches, budget {', '.join(map(str, budgets)) or '?'} trials each "
                  "(validation Recall@20; the test split withheld).", "",
                  "| model | trials (complete / pruned) | repeated points | default valid | tuned valid | change "
                  "| tuned point (keys that moved) | best epoch | epochs trained | epochs saved by pruning "
                  "| trial time |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in rows:
            change = "n/a" if r["change"] is None else f"{r['change'] * 100:+.1f} %"
            saved = "n/a" if r["epochs_saved"] is None else f"{r['epochs_saved']:.0f}"
            failed = f", {r['failed']} failed" if r["failed"] else ""
            secs = "n/a" if r["trial_seconds"] is None else f"{r['trial_seconds'] / 60:.0f} min"
            lines.append(f"| {MODEL_NAMES.get(r['model'], r['model'])} | {r['trials']} ({r['completed']} / "
                         f"{r['pruned']}{failed}) | {r['duplicates']} | {_f4(r['default_valid'])} | "
                         f"{_f4(r['tuned_valid'])} | {change} | {r['point']} | {r['best_epoch']} | "
                         f"{r['epochs_run']} | {saved} | {secs} |")
        run = sum(r["epochs_run"] or 0 for r in rows)
        saved = sum(r["epochs_saved"] or 0 for r in rows)
        secs = sum(r["trial_seconds"] or 0 for r in rows)
        short = [r["model"] for r in rows if r["budget"] is not None and r["trials"] < r["budget"]]
        confirmed = [f"{MODEL_NAMES.get(r['model'], r['model'])} (seeds {', '.join(map(str, r['confirm_seeds']))})"
                     for r in rows if r["confirm_seeds"]]
        lines += ["", f"Total: {run} epochs trained, {saved:.0f} saved by pruning "
                  f"({saved / max(run + saved, 1) * 100:.0f} % of {run + saved:.0f}), "
                  f"{secs / 3600:.1f} h of trials."
                  + (f" **Below budget** (search not finished): {', '.join(short)}." if short else "")
                  + (" Confirmed after the budget (default and tuned valid are means over the seeds; the best "
                     f"points re-trained, slifmr/tune/confirm.py): {'; '.join(confirmed)}." if confirmed else ""), ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m slifmr.tune.summary", description=__doc__.splitlines()[0])
    ap.add_argument("root", help="the search outputs' root (default layout: outputs/tune)")
    ap.add_argument("--dataset", help="only this dataset's searches")
    args = ap.parse_args(argv)
    try:
        print(markdown(read_summaries(Path(args.root), args.dataset)), end="")
    except SummaryError as e:
        print(f"slifmr.tune.summary: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

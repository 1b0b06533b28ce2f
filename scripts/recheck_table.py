"""Read ``scripts/recheck_defaults.sh``'s runs and apply its pre-registered rule.

    python scripts/recheck_table.py outputs/recheck [--reference ref]

Cells: best-epoch valid Recall@20 per (arm, dataset), the mean over the seeds that every arm
completed for that dataset (a partial run compares like with like). The rule (written in the shell
script before any run): a candidate replaces the reference only if its mean over all shared
(dataset, seed) cells is higher AND it is higher on a majority of the datasets; if several pass,
the higher mean wins. Test numbers are never read (the runs made none: ``test=false``).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

METRIC = "recall@20"


def load(root: Path) -> dict[str, dict[tuple[str, int], float]]:
    """{arm: {(dataset, seed): best-epoch valid Recall@20}} from ``<root>/<arm>/seed<s>/<dataset>/record.json``."""
    runs: dict[str, dict[tuple[str, int], float]] = {}
    for rec in sorted(root.glob("*/seed*/*/record.json")):
        dataset, seed, arm = rec.parent.name, int(rec.parent.parent.name.removeprefix("seed")), rec.parent.parent.parent.name
        r = json.loads(rec.read_text())
        if r.get("test"):
            raise SystemExit(f"{rec}: holds test metrics; these runs must be validation-only")
        runs.setdefault(arm, {})[(dataset, seed)] = float(r["val"][METRIC])
    return runs


def decide(runs: dict[str, dict[tuple[str, int], float]], reference: str) -> tuple[str, list[str], str]:
    """(markdown table, the arms that pass the rule, the winner)."""
    arms = [reference] + sorted(a for a in runs if a != reference)
    shared = set.intersection(*(set(runs[a]) for a in arms)) if arms else set()
    datasets = sorted({d for d, _ in shared}, key=lambda d: (not d.startswith("synth"), len(d), d))
    head = ["arm", *datasets, "mean over shared cells", "datasets above reference"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    passing, means = [], {}
    for arm in arms:
        row, wins = [arm], 0
        for d in datasets:
            cells = sorted(s for dd, s in shared if dd == d)
            m = statistics.fmean(runs[arm][(d, s)] for s in cells)
            r = statistics.fmean(runs[reference][(d, s)] for s in cells)
            wins += m > r
            row.append(f"{m:.4f} (n={len(cells)})")
        means[arm] = statistics.fmean(runs[arm][c] for c in shared)
        row += [f"{means[arm]:.4f}", "-" if arm == reference else f"{wins} of {len(datasets)}"]
        if arm != reference and means[arm] > means[reference] and wins > len(datasets) / 2:
            passing.append(arm)
        lines.append("| " + " | ".join(row) + " |")
    winner = max(passing, key=means.get) if passing else reference
    return "\n".join(lines), passing, winner


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("--reference", default="ref")
    args = ap.parse_args()
    runs = load(args.root)
    if args.reference not in runs:
        raise SystemExit(f"{args.root}: no runs of the reference arm {args.reference!r}")
    table, passing, winner = decide(runs, args.reference)
    print(table)
    print(f"\npassing the rule: {', '.join(passing) or 'none'}; default after the rule: {winner}")


if __name__ == "__main__":
    main()

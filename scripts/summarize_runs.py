"""Mean ± std of test metrics over run directories, grouped by a name pattern.

    python scripts/summarize_runs.py outputs/ml100k/*-s*          # groups by folder/name before "-s<seed>"
    python scripts/summarize_runs.py outputs/train/multiruns/<stamp>/*  # groups by the overrides but seed

Reads each run's CSV log (csv/version_*/metrics.csv) and takes the test row. A stop-gap until
`slifmr.report` (studies issue) collects full result records.
"""

from __future__ import annotations

import csv
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

METRICS = ("recall@20", "ndcg@20", "precision@20")


def test_metrics(run: Path) -> dict[str, float] | None:
    for f in sorted(run.glob("csv/version_*/metrics.csv")):
        for row in csv.DictReader(open(f)):
            if row.get("test/recall@20"):
                return {k[5:]: float(v) for k, v in row.items() if k.startswith("test/") and v}
    return None


def group_key(run: Path) -> str:
    """Runs named <name>-s<seed> group per folder; Hydra multirun jobs group by their overrides
    without the seed."""
    if re.search(r"-s\d+$", run.name):
        return f"{run.parent.name}/{re.sub(r'-s[0-9]+$', '', run.name)}"
    overrides = run / ".hydra" / "overrides.yaml"
    if overrides.exists():
        items = [ln.strip()[2:] for ln in open(overrides) if ln.strip().startswith("- ")]
        return " ".join(i for i in items if not i.startswith("seed=")) or run.name
    return run.name


def main(paths: list[str]) -> None:
    groups: dict[str, list[dict[str, float]]] = defaultdict(list)
    for p in map(Path, paths):
        if not p.is_dir():
            continue
        m = test_metrics(p)
        if m is not None:
            groups[group_key(p)].append(m)
    print("| run | n | " + " | ".join(METRICS) + " |")
    print("|---|---|" + "---|" * len(METRICS))
    for name, runs in sorted(groups.items()):
        cells = []
        for k in METRICS:
            vals = [r[k] for r in runs]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.4f} ± {sd:.4f}")
        print(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])

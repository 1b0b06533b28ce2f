"""Validation Recall@20 of a validation-only search (runs made with ``test=false``), as Markdown.

    python scripts/tune_table.py outputs/tune_synth [--reference prune_0]

Rows: the variant directories under the given root; columns: the datasets (the run
directories inside each variant); cells: best-epoch valid Recall@20 (best epoch / epochs run).
With ``--reference``, a last column gives each variant's mean over the datasets it shares with
the reference, next to the reference's mean over the same datasets. No test number is read.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load(root: Path) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for rec in sorted(root.glob("*/*/record.json")):
        variant, dataset = rec.parent.parent.name, rec.parent.name
        out.setdefault(variant, {})[dataset] = json.loads(rec.read_text())
    return out


def table(runs: dict[str, dict[str, dict]], reference: str | None = None, metric: str = "recall@20") -> str:
    datasets = sorted({d for v in runs.values() for d in v}, key=lambda d: (len(d), d))
    head = ["variant", *datasets] + (["mean (variant / reference, same datasets)"] if reference else [])
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    ref = runs.get(reference, {}) if reference else {}
    for variant, cells in runs.items():
        row = [variant]
        for d in datasets:
            r = cells.get(d)
            row.append("" if r is None else f"{r['val'][metric]:.4f} ({r['best_epoch']}/{r['epochs']})")
        if reference:
            shared = [d for d in cells if d in ref]
            if shared:
                mine = sum(cells[d]["val"][metric] for d in shared) / len(shared)
                base = sum(ref[d]["val"][metric] for d in shared) / len(shared)
                row.append(f"{mine:.4f} / {base:.4f}")
            else:
                row.append("")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path)
    ap.add_argument("--reference", help="variant to compare every other with, on their shared datasets")
    args = ap.parse_args()
    print(table(load(args.root), args.reference), end="")


if __name__ == "__main__":
    main()

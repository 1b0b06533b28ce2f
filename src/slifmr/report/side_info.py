"""The side-information study's report (sweeps/side_info.yaml, issue 14): per sparsity level and
kind of side information, each arm's test Recall@20, SLIF-MR against LightGCN, what removing each
of SLIF-MR's parts costs, and the diagnostics that say why (per-view validation Recall@20, fusion
weights per view, share of G in A).

    python -m slifmr.report.side_info outputs/sweeps/side_info [--out DIR] [--format png,pdf]

With ``--out`` it also draws ``side_info_recall.<fmt>``: test Recall@20 against interactions per
user, one panel per kind of side information (informative, noise), a line per arm.

Cells come from :func:`slifmr.report.aggregate.aggregate` (rows = arms, columns = datasets, one
per family member ``synth-u<per_user>-<side>``); paired p-values from :mod:`significance`.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from slifmr.report.aggregate import MODEL_NAMES, Row, Table, aggregate, metric_label
from slifmr.report.records import ReportError, load_records
from slifmr.report.significance import compare_rows
from slifmr.report.tables import fmt_cell, fmt_p, write_text

METRIC = "recall@20"
ABLATIONS = {"wo_kg": "w/o KG", "wo_mm": "w/o MM", "wo_kg_mm": "w/o KG&MM", "wo_sge": "w/o SGE", "wo_cl": "w/o CL"}
VIEWS = ("interaction", "feature", "kg")
MEMBER = re.compile(r"^synth-u(?P<per_user>\d+)-(?P<side>\w+)$")
# the targets: informative side information at these sparsity levels ...
TARGET_GAIN, TARGET_ABLATION, TARGET_NOISE = 5.0, 1.0, 1.0  # % over LightGCN, % cost per part, % band


def arm_of(row: Row) -> str:
    """'slifmr_wo_kg' from the row's ``arm=`` override (the model's name without one)."""
    for item in row.variant.split():
        key, _, value = item.partition("=")
        if key == "arm":
            return value
    return row.model


def arm_label(arm: str) -> str:
    model, _, ablation = arm.partition("_")
    name = MODEL_NAMES.get(model, model)
    return f"{name} {ABLATIONS.get(ablation, ablation)}".strip()


def _columns(table: Table) -> list[tuple[str, int, str]]:
    """(dataset, per_user, side) of each family member in the table, by side then sparsity."""
    cols = []
    for ds in table.datasets:
        m = MEMBER.match(ds)
        if m is None:
            raise ReportError(f"dataset '{ds}' is not a member of the side-information family (synth-u<N>-<side>)")
        cols.append((ds, int(m["per_user"]), m["side"]))
    return sorted(cols, key=lambda c: (c[2] != "informative", c[1]))


def _mean_val(records: list[dict[str, Any]], key: str) -> float:
    vals = [r.get("val", {}).get(key) for r in records]
    vals = [float(v) for v in vals if v is not None]
    return float(np.mean(vals)) if vals else math.nan


def _g_share(records: list[dict[str, Any]]) -> tuple[float, float]:
    """(mean over runs of the first refresh's share, of the last refresh's share)."""
    first, last = [], []
    for r in records:
        hist = [h["g_share"] for h in r.get("self_loop_history") or [] if h.get("g_share") is not None]
        if hist:
            first.append(hist[0])
            last.append(hist[-1])
    return (float(np.mean(first)) if first else math.nan, float(np.mean(last)) if last else math.nan)


def _pct(a: float, b: float) -> float:
    return (a - b) / b * 100 if b else math.nan


def _fmt(x: float, digits: int = 3) -> str:
    return "" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def _pair(a: float, b: float, form: str) -> str:
    """Two numbers in one cell, or an empty cell when the first is missing."""
    return "" if math.isnan(a) else form.format(_fmt(a, 2), _fmt(b, 2))


def _arms(table: Table) -> tuple[dict[str, Row], list[str]]:
    """{arm: row} and the arms in report order (baselines, SLIF-MR, its ablations, the rest)."""
    rows = {arm_of(r): r for r in table.rows}
    order = [a for a in ("lightgcn", "freedom", "kgin", "slifmr") if a in rows]
    order += [f"slifmr_{a}" for a in ABLATIONS if f"slifmr_{a}" in rows]
    return rows, order + sorted(set(rows) - set(order))


def side_info_plot(records: list[dict[str, Any]], out: Path, formats: tuple[str, ...] = ("png",)) -> Path:
    """Test Recall@20 (mean ± std over seeds) vs interactions per user (log x), a panel per kind
    of side information, a line per arm (SLIF-MR's ablations dashed)."""
    from slifmr.report.plots import _axes_grid, _save

    table = aggregate(records, [METRIC], drop={"dataset.per_user", "dataset.side"})
    cols = _columns(table)
    rows, order = _arms(table)
    sides = list(dict.fromkeys(side for _, _, side in cols))
    fig, axes = _axes_grid(1, len(sides), w=4.8, h=3.8)
    for ax, side in zip(axes[0], sides):
        members = [(ds, n) for ds, n, sd in cols if sd == side]
        for arm in order:
            pts = [(n, st.mean, st.std if st.n > 1 else 0.0) for ds, n in members
                   if (st := table.get(rows[arm], ds, METRIC)) is not None and st.n]
            if not pts:
                continue
            x, y, e = zip(*pts)
            ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=arm_label(arm),
                        linestyle="--" if arm.startswith("slifmr_") else "-", linewidth=1.2)
        ns = sorted({n for _, n in members})
        ax.set_xscale("log")
        ax.set_xticks(ns)
        ax.set_xticklabels([str(n) for n in ns])
        ax.minorticks_off()
        ax.set_xlabel("interactions per user (dataset.per_user)")
        ax.set_ylabel(f"test {metric_label(METRIC)}")
        ax.set_title(f"{side} side information")
        ax.grid(alpha=0.3)
    lo = min(ax.get_ylim()[0] for ax in axes[0])
    hi = max(ax.get_ylim()[1] for ax in axes[0])
    for ax in axes[0]:  # one y range, so informative and noise compare at a glance
        ax.set_ylim(lo, hi)
    axes[0][-1].legend(fontsize=7, title="arm", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    n = max((st.n for st in table.cells.values()), default=0)
    fig.suptitle(f"Side-information study: mean ± std over {n} seeds" if n > 1 else "Side-information study (one seed)")
    return _save(fig, Path(out) / "side_info_recall.png", formats)


def side_info_markdown(records: list[dict[str, Any]], test: str = "auto") -> str:
    """The study's Markdown: results per arm, SLIF-MR vs LightGCN and the ablations' costs (with
    the issue's targets checked), and SLIF-MR's diagnostics per family member."""
    table = aggregate(records, [METRIC], drop={"dataset.per_user", "dataset.side"})
    cols = _columns(table)
    rows, order = _arms(table)
    head = [f"{side} u{n}" for _, n, side in cols]
    out = [f"Test Recall@20, mean ± std over seeds (n per cell in brackets); columns: side information, "
           f"interactions per user. {len(records)} records.", "",
           "| arm | " + " | ".join(head) + " |", "|---|" + "---|" * len(cols)]

    def stat(arm: str, ds: str):
        return table.get(rows[arm], ds, METRIC) if arm in rows else None

    for arm in order:
        cells = []
        for ds, _, _ in cols:
            st = stat(arm, ds)
            cells.append("" if st is None else f"{fmt_cell(st.mean, st.std)} ({st.n})")
        out.append(f"| {arm_label(arm)} | " + " | ".join(cells) + " |")

    # SLIF-MR against LightGCN, and what each part is worth (full - ablation, % of the ablation)
    out += ["", "SLIF-MR against LightGCN and against its own ablations: % difference of the means "
            "(positive = the full SLIF-MR is better); p: paired test over per-user test values.", "",
            "| comparison | " + " | ".join(head) + " |", "|---|" + "---|" * len(cols)]
    checks: list[str] = []
    others = [("lightgcn", "vs LightGCN")] + [(f"slifmr_{a}", f"vs {lab}") for a, lab in ABLATIONS.items()]
    for other, label in others:
        if "slifmr" not in rows or other not in rows:
            continue
        cells, ps = [], []
        for ds, n, side in cols:
            a, b = stat("slifmr", ds), stat(other, ds)
            if a is None or b is None:
                cells.append("")
                ps.append("")
                continue
            d = _pct(a.mean, b.mean)
            _, p, _ = compare_rows(a.records, b.records, METRIC, test)
            cells.append(f"{d:+.2f}%")
            ps.append(fmt_p(p))
            if other == "lightgcn":
                if side == "informative" and n <= 10:
                    checks.append(f"informative u{n}: SLIF-MR vs LightGCN {d:+.2f}% (target >= +{TARGET_GAIN:g}%): "
                                  + ("met" if d >= TARGET_GAIN else "NOT met"))
                elif side == "noise":
                    checks.append(f"noise u{n}: SLIF-MR vs LightGCN {d:+.2f}% (target within ±{TARGET_NOISE:g}%, "
                                  "or better): " + ("met" if d >= -TARGET_NOISE else "NOT met"))
            elif side == "informative" and n <= 10 and other in ("slifmr_wo_kg", "slifmr_wo_mm", "slifmr_wo_sge"):
                checks.append(f"informative u{n}: removing {ABLATIONS[other[7:]][4:]} costs {d:+.2f}% "
                              f"(target >= {TARGET_ABLATION:g}%): " + ("met" if d >= TARGET_ABLATION else "NOT met"))
        out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append(f"| p | " + " | ".join(ps) + " |")
    if checks:
        out += ["", "Targets of issue 14:", ""] + [f"- {c}" for c in checks]

    # why: SLIF-MR's diagnostics (validation, best epoch; means over seeds)
    if "slifmr" in rows:
        out += ["", "Full SLIF-MR's diagnostics at the best validation epoch (means over seeds): validation "
                "Recall@20 of the fused model and of each view scored alone with the users' x̄_u; mean fusion "
                "(AILF) weight per view (its std over items in brackets); share of G in an item row of the "
                "normalised A^n after the first and the last refresh.", "",
                "| diagnostic | " + " | ".join(head) + " |", "|---|" + "---|" * len(cols)]
        recs = {ds: st.records for ds, _, _ in cols if (st := stat("slifmr", ds)) is not None}
        lines = {"valid Recall@20 (fused)": [_fmt(_mean_val(recs.get(ds, []), METRIC)) for ds, _, _ in cols]}
        if "lightgcn" in rows:
            lines["valid Recall@20, LightGCN"] = [
                _fmt(_mean_val(stat("lightgcn", ds).records, METRIC)) if stat("lightgcn", ds) else "" for ds, _, _ in cols]
        for v in VIEWS:
            lines[f"valid Recall@20, {v} view alone"] = [_fmt(_mean_val(recs.get(ds, []), f"view_{v}/{METRIC}"))
                                                        for ds, _, _ in cols]
        for v in VIEWS:
            lines[f"fusion weight, {v}"] = [
                _pair(_mean_val(recs.get(ds, []), f"fusion_weight/{v}"),
                      _mean_val(recs.get(ds, []), f"fusion_weight_std/{v}"), "{} ({})") for ds, _, _ in cols]
        shares = [_g_share(recs.get(ds, [])) for ds, _, _ in cols]
        lines["share of G in A, first / last refresh"] = [_pair(a, b, "{} / {}") for a, b in shares]
        for name, cells in lines.items():
            out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def report(paths: list[str | Path], out: str | Path | None = None, test: str = "auto",
           formats: tuple[str, ...] = ("png",)) -> dict[str, Any]:
    """The Markdown; with ``out``, also side_info.md and the figure in each of ``formats``."""
    records = load_records(paths)
    md = side_info_markdown(records, test)
    files = []
    if out is not None:
        files.append(write_text(Path(out) / "side_info.md", md))
        files.append(side_info_plot(records, Path(out), formats))
    return {"markdown": md, "records": records, "files": files}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m slifmr.report.side_info", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", help="the study's multirun directory (or record files)")
    ap.add_argument("--out", help="also write side_info.md and the figure there")
    ap.add_argument("--format", default="png", metavar="FMT[,FMT]", help="figure formats: png, pdf, svg (300 dpi)")
    ap.add_argument("--test", choices=["auto", "wilcoxon", "ttest"], default="auto")
    args = ap.parse_args(argv)
    try:
        res = report(args.paths, args.out, args.test, tuple(f.strip() for f in args.format.split(",") if f.strip()))
    except ReportError as e:
        print(f"slifmr.report.side_info: error: {e}", file=sys.stderr)
        return 2
    print(res["markdown"])
    if res["files"]:
        print("wrote:\n" + "\n".join(f"  {p}" for p in res["files"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

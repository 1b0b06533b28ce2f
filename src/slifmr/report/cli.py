"""``python -m slifmr.report <run or multirun dir ...> [--out DIR] [--metrics ...]``.

Collects every result record under the given directories and writes, into ``--out``:
``results.csv`` / ``results.md`` (and ``results.tex``, booktabs, with ``--latex``) (mean ± std over seeds, %Imp of ours over the best
baseline, paired p-values, Holm-adjusted with ``--holm``, and whether each row was tuned or ran at its defaults),
``tuning.csv``, ``comparisons.csv``, ``versus_default.csv`` with ``--versus-default`` (each model's variant rows, e.g.
tuned, against its default row), ``interval.csv`` / ``interval.md`` for a self-loop interval sweep, and the
plots that apply (or the one ``--plot`` asks for) in each ``--format`` (png, pdf, svg; 300 dpi).

``python -m slifmr.report --from-csv <study>/results.csv [--out DIR] [--format png,pdf]`` re-plots a
study's figures from the report's own committed table (``interval.csv`` for the interval plot)
when its run records are not at hand.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from pathlib import Path
from typing import Any

from slifmr.report.aggregate import aggregate, find_row, metric_label, overrides_of
from slifmr.report.plots import INTERVAL_KEY, KINDS, detect_studies, interval_rows, make_plots
from slifmr.report.records import ReportError, load_records, records_from_csv
from slifmr.report.significance import compare_rows, holm as holm_adjust
from slifmr.report.tables import (comparisons_csv, fmt_cell, results_csv, results_latex, results_markdown,
                                  write_text)
from slifmr.report.tuning import tuning_csv, tuning_markdown, tuning_rows
from slifmr.report.versus import versus_csv, versus_default, versus_markdown

DEFAULT_METRICS = ["recall@20", "ndcg@20"]


def _interval_tables(rows: list[dict[str, Any]], metrics: list[str]) -> tuple[str, str]:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    keys = list(rows[0])
    w.writerow(keys)
    for r in rows:
        w.writerow(["" if isinstance(r[k], float) and math.isnan(r[k]) else r[k] for k in keys])
    md = ["| dataset (variant) | interval | n | " + " | ".join(metric_label(m) for m in metrics) + " | training time (s) | epochs |",
          "|---|---|---|" + "---|" * len(metrics) + "---|---|"]
    for r in rows:
        cells = [fmt_cell(r[f"{m}_mean"], r[f"{m}_std"]) for m in metrics]
        md.append(f"| {r['line']} | {r['interval']} | {r['n']} | " + " | ".join(cells)
                  + f" | {fmt_cell(r['fit_s_mean'], r['fit_s_std'], 1)} | {r['epochs_mean']:g} |")
    return buf.getvalue(), "\n".join(md) + "\n"


def report(paths: list[str | Path], out: str | Path, metrics: list[str] | None = None, ours: str = "slifmr",
           baseline: str | None = None, test: str = "auto", plot: str | None = None,
           x: str | None = None, merge: list[str] | None = None,
           formats: tuple[str, ...] = ("png",), latex: bool = False, holm: bool = False,
           versus: bool = False) -> dict[str, Any]:
    """Write the report of the records under ``paths`` into ``out``; returns what it wrote
    ({"table", "comparisons", "files", "markdown"}). ``merge``: override keys that do not make a
    separate row (e.g. an epoch cap given to some models only); the table says which. ``latex``:
    also results.tex (booktabs); ``holm``: Holm-adjusted p-values over all of the report's tests;
    ``versus``: also each model's variant rows against its default row (versus_default.csv and a
    section of results.md: change and paired p per model, e.g. tuned against default)."""
    metrics = list(metrics or DEFAULT_METRICS)
    records = load_records(paths)
    out = Path(out)
    table = aggregate(records, metrics, ours=ours, drop=set(merge or ()))
    base_row = find_row(table, baseline) if baseline else None
    comps = table.comparisons(base_row)
    for c in comps:
        ours_recs = table.get(c.ours, c.dataset, c.metric).records
        base_recs = table.get(c.baseline, c.dataset, c.metric).records
        c.test, c.p_value, c.n_users = compare_rows(ours_recs, base_recs, c.metric, test)
    if holm:  # the family: every (dataset, metric, ours row) test of this report
        for c, p in zip(comps, holm_adjust([c.p_value for c in comps])):
            c.p_holm = p
    md = results_markdown(table, comps, len(records), fixed_baseline=base_row is not None, holm=holm)
    merged = sorted({f"{k}={v}" for r in records for k, v in overrides_of(r).items() if k in set(merge or ())})
    if merged:
        md += (f"\nRows merge runs that differ only in {', '.join(sorted(set(merge or ())))} "
               f"(values used: {', '.join(merged)}; each run's record has its own).\n")
    tuning = tuning_rows(table)  # tuned or default, budget, the validation score each row was selected on
    md += tuning_markdown(tuning)
    cells = versus_default(table, test) if versus else []
    if versus:
        md += "\n" + (versus_markdown(cells) or "No model has both a default row and a variant row here.\n")
    files = [write_text(out / "results.csv", results_csv(table)), write_text(out / "results.md", md),
             write_text(out / "tuning.csv", tuning_csv(tuning))]
    if latex:
        files.append(write_text(out / "results.tex", results_latex(table, comps, holm=holm)))
    if comps:
        files.append(write_text(out / "comparisons.csv", comparisons_csv(comps)))
    if versus:
        files.append(write_text(out / "versus_default.csv", versus_csv(cells)))
    studies = [(plot, x)] if plot and plot != "none" else ([] if plot == "none" else detect_studies(records))
    if any(k == "interval" for k, _ in studies):
        csv_text, md_text = _interval_tables(interval_rows(records, metrics), metrics)
        files += [write_text(out / "interval.csv", csv_text), write_text(out / "interval.md", md_text)]
    if plot != "none":
        files += make_plots(records, metrics, out, kind=plot, x=x, formats=formats)
    return {"table": table, "comparisons": comps, "files": files, "markdown": md, "records": records}


def replot(csvs: list[str | Path], out: str | Path, metrics: list[str] | None = None, plot: str | None = None,
           x: str | None = None, formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """The study's figures from its committed ``results.csv`` / ``interval.csv`` (when the run
    records are not at hand): same plots, same error bars (the CSV's std over n seeds). Tables are
    not rewritten: p-values need the per-user values, which only the records have."""
    records = records_from_csv(csvs)
    metrics = list(metrics or DEFAULT_METRICS)
    if plot == "none":
        return []
    return make_plots(records, metrics, Path(out), kind=plot, x=x, formats=formats)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m slifmr.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", help="run or multirun directories (searched recursively for record.json); "
                    "with --from-csv, a report's results.csv / interval.csv files")
    ap.add_argument("--from-csv", action="store_true",
                    help="re-plot the figures from a report's committed results.csv / interval.csv (no records "
                    "needed; tables are not rewritten, p-values need the records)")
    ap.add_argument("--out", help="output directory (default: <dir>/report for one dir, else ./report)")
    ap.add_argument("--metrics", nargs="+", default=DEFAULT_METRICS, help="test metrics, e.g. recall@20 ndcg@20")
    ap.add_argument("--ours", default="slifmr", help="the model whose %%Imp is reported (default: slifmr)")
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--baseline-best", action="store_true",
                       help="compare ours with the best baseline of each dataset and metric (default)")
    group.add_argument("--baseline", help="compare ours with this row instead (label or model name)")
    ap.add_argument("--test", choices=["auto", "wilcoxon", "ttest"], default="auto",
                    help="paired test over per-user values (auto: Wilcoxon with scipy, else t-test)")
    ap.add_argument("--plot", choices=[*KINDS, "none"], help="force one plot (default: detected from the sweep)")
    ap.add_argument("--x", help=f"the swept key for --plot sensitivity (e.g. model.L); interval uses {INTERVAL_KEY}")
    ap.add_argument("--merge", nargs="+", default=[], metavar="KEY",
                    help="override keys that do not split rows (e.g. trainer.max_epochs given to some models only)")
    ap.add_argument("--format", default="png", metavar="FMT[,FMT]",
                    help="figure formats, comma-separated: png, pdf, svg (default png; all at 300 dpi)")
    ap.add_argument("--latex", action="store_true", help="also write results.tex (booktabs tabular)")
    ap.add_argument("--versus-default", action="store_true",
                    help="also compare each model's variant rows (e.g. tuned=<set>) with its default row: change and "
                    "paired p per model (versus_default.csv, and a section of results.md)")
    ap.add_argument("--holm", action="store_true",
                    help="add Holm-adjusted p-values over the report's family of tests (all datasets, metrics, rows)")
    args = ap.parse_args(argv)
    out = args.out or (Path(args.paths[0]) / "report" if len(args.paths) == 1 else Path("report"))
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    if args.from_csv:
        try:
            files = replot(args.paths, args.out or Path(args.paths[0]).parent, args.metrics, args.plot, args.x,
                           formats)
        except ReportError as e:
            print(f"slifmr.report: error: {e}", file=sys.stderr)
            return 2
        print("wrote:\n" + "\n".join(f"  {p}" for p in files) if files else "no figure applies to these rows")
        return 0
    try:
        res = report(args.paths, out, args.metrics, args.ours, args.baseline, args.test, args.plot, args.x,
                     args.merge, tuple(f.strip() for f in args.format.split(",") if f.strip()),
                     latex=args.latex, holm=args.holm, versus=args.versus_default)
    except ReportError as e:
        print(f"slifmr.report: error: {e}", file=sys.stderr)
        return 2
    print(res["markdown"])
    print("wrote:\n" + "\n".join(f"  {p}" for p in res["files"]))
    return 0

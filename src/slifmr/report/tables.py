"""Tables: CSV (numbers, for other tools), Markdown (for people) and LaTeX (booktabs, for the
paper), rows = model/variant, columns = dataset x metric, cells = mean ± std over seeds (the
mean alone when a cell has one run), then %Imp and p rows."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from slifmr.report.aggregate import Comparison, Table, metric_label, variant_label
from slifmr.records import atomic_write_bytes
from slifmr.report.significance import POOLING


def _num(x: float) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))


def fmt_cell(mean: float, std: float, digits: int = 4) -> str:
    """'0.3297 ± 0.0083'; just the mean with one seed (no std to show)."""
    if math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt_p(p: float) -> str:
    if p is None or math.isnan(p):
        return "n/a"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def results_csv(table: Table) -> str:
    """Wide CSV: model, variant, label, then <dataset>/<metric>/{mean,std,n} per column."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = [(d, m) for d in table.datasets for m in table.metrics]
    w.writerow(["model", "variant", "label"] + [f"{d}/{m}/{s}" for d, m in cols for s in ("mean", "std", "n")])
    for row in table.rows:
        cells = []
        for d, m in cols:
            st = table.get(row, d, m)
            cells += ["", "", 0] if st is None else [_num(st.mean), _num(st.std), st.n]
        w.writerow([row.model, row.variant, row.label] + cells)
    return buf.getvalue()


def comparisons_csv(comps: list[Comparison]) -> str:
    """Long CSV: one line per (dataset, metric, ours row) with %Imp and the paired test."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["dataset", "metric", "ours", "baseline", "ours_mean", "baseline_mean", "imp_pct", "test",
                "p_value", "n_users", "pooling", "p_holm"])
    for c in comps:
        w.writerow([c.dataset, c.metric, c.ours.label, c.baseline.label, _num(c.ours_mean), _num(c.baseline_mean),
                    _num(c.imp_pct), c.test, _num(c.p_value), c.n_users, POOLING, _num(c.p_holm)])
    return buf.getvalue()


def _rank_marks(table: Table, dataset: str, metric: str, bold: tuple[str, str] = ("**", "**"),
                under: tuple[str, str] = ("<u>", "</u>")) -> dict:
    """Best row bold, second best underlined (as in the paper's Table II)."""
    means = sorted(((st.mean, row) for row in table.rows if (st := table.get(row, dataset, metric)) is not None
                    and not math.isnan(st.mean)), key=lambda t: -t[0])
    marks = {}
    if means:
        marks[means[0][1]] = bold
    if len(means) > 1 and means[1][0] < means[0][0]:
        marks[means[1][1]] = under
    return marks


def _spread_note(table: Table) -> str:
    """What a cell shows: '± std' is claimed only if some cell has more than one run."""
    ns = {st.n for st in table.cells.values()}
    if max(ns, default=1) <= 1:
        return "one run per cell (no std)"
    if min(ns) <= 1:
        return "mean ± std (sample std) over seeds where n > 1, the single value where n = 1"
    return "mean ± std (sample std) over seeds"


def results_markdown(table: Table, comps: list[Comparison], n_records: int, fixed_baseline: bool = False,
                     holm: bool = False) -> str:
    """The main table with %Imp / p rows under it, and a notes paragraph saying how it was made."""
    cols = [(d, m) for d in table.datasets for m in table.metrics]
    multi_ds = len(table.datasets) > 1
    head = [f"{d} {metric_label(m)}" if multi_ds else metric_label(m) for d, m in cols]
    lines = ["| model | n | " + " | ".join(head) + " |", "|---|---|" + "---|" * len(cols)]
    marks = {(d, m): _rank_marks(table, d, m) for d, m in cols}
    for row in table.rows:
        ns = {st.n for d, m in cols if (st := table.get(row, d, m)) is not None}
        cells = []
        for d, m in cols:
            st = table.get(row, d, m)
            if st is None:
                cells.append("")
                continue
            a, b = marks[(d, m)].get(row, ("", ""))
            cells.append(f"{a}{fmt_cell(st.mean, st.std)}{b}")
        n = "/".join(str(x) for x in sorted(ns))
        lines.append(f"| {row.display} | {n} | " + " | ".join(cells) + " |")
    ours_rows = [r for r in table.rows if table.is_ours(r)]
    by_key = {(c.ours, c.dataset, c.metric): c for c in comps}
    for row in ours_rows:
        if not any((row, d, m) in by_key for d, m in cols):
            continue  # nothing to compare this row with (e.g. a study of SLIF-MR variants only)
        suffix = f" ({variant_label(row.variant)})" if len(ours_rows) > 1 and row.variant else ""
        imp, ps, hs = [], [], []
        for d, m in cols:
            c = by_key.get((row, d, m))
            imp.append("" if c is None else f"{c.imp_pct:+.2f}%")
            ps.append("" if c is None else fmt_p(c.p_value))
            hs.append("" if c is None else fmt_p(c.p_holm))
        lines.append(f"| %Imp{suffix} | | " + " | ".join(imp) + " |")
        lines.append(f"| p{suffix} | | " + " | ".join(ps) + " |")
        if holm:
            lines.append(f"| p (Holm){suffix} | | " + " | ".join(hs) + " |")
    notes = ["", f"Test metrics, {_spread_note(table)}; n = runs per cell; {n_records} records. "
             "Best per column in bold, second underlined."]
    if comps:
        bases = sorted({(c.dataset, metric_label(c.metric), c.baseline.display) for c in comps})
        tests = sorted({c.test for c in comps if c.test}) or ["none (no per-user values)"]
        which = "baseline (fixed)" if fixed_baseline else "best baseline"
        notes.append(
            f"%Imp = (ours - baseline) / baseline x 100, per column; {which}: "
            + "; ".join(f"{d} {m}: {b}" for d, m, b in bases) + ". "
            + f"p: {', '.join(tests)} over per-user test values ({POOLING}).")
        if holm:
            m = sum(1 for c in comps if c.p_holm == c.p_holm)
            notes.append(f"p (Holm): Holm's step-down correction over the report's {m} tests "
                         "(family-wise error).")
    elif ours_rows:
        notes.append("No %Imp: no baseline rows in these records.")
    repeated = table.repeated_seeds()
    if repeated:
        notes.append("**Warning**: a seed counted more than once in " + "; ".join(repeated) + ".")
    if table.common:
        notes.append("Common to all runs: " + " ".join(f"`{k}={v}`" for k, v in sorted(table.common.items())) + ".")
    return "\n".join(lines + notes) + "\n"


# -- LaTeX (booktabs) ---------------------------------------------------------------------------------------
_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "β": r"$\beta$", "γ": r"$\gamma$", "τ": r"$\tau$", "±": r"$\pm$"}


def tex_escape(text: str) -> str:
    """Plain text -> LaTeX text (special characters escaped, the Greek letters our names use as math)."""
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))


def _tex_cell(mean: float, std: float, digits: int = 4) -> str:
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} $\\pm$ {std:.{digits}f}"


def results_latex(table: Table, comps: list[Comparison], holm: bool = False) -> str:
    """The results table as a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``): one row per
    model/variant, best per column in bold, second underlined, %Imp / p rows under a midrule."""
    cols = [(d, m) for d in table.datasets for m in table.metrics]
    multi_ds = len(table.datasets) > 1
    lines = [r"\begin{tabular}{l" + "c" * len(cols) + "}", r"\toprule"]
    if multi_ds:
        k = len(table.metrics)
        lines.append(" & " + " & ".join(rf"\multicolumn{{{k}}}{{c}}{{{tex_escape(d)}}}" for d in table.datasets)
                     + r" \\")
        lines.append(" ".join(rf"\cmidrule(lr){{{2 + i * k}-{1 + (i + 1) * k}}}" for i in range(len(table.datasets))))
    lines.append("Model & " + " & ".join(tex_escape(metric_label(m)) for _, m in cols) + r" \\")
    lines.append(r"\midrule")
    marks = {(d, m): _rank_marks(table, d, m, (r"\textbf{", "}"), (r"\underline{", "}")) for d, m in cols}
    for row in table.rows:
        cells = []
        for d, m in cols:
            st = table.get(row, d, m)
            a, b = marks[(d, m)].get(row, ("", "")) if st is not None else ("", "")
            cells.append("" if st is None else f"{a}{_tex_cell(st.mean, st.std)}{b}")
        lines.append(tex_escape(row.display) + " & " + " & ".join(cells) + r" \\")
    by_key = {(c.ours, c.dataset, c.metric): c for c in comps}
    ours_rows = [r for r in table.rows if table.is_ours(r) and any((r, d, m) in by_key for d, m in cols)]
    if ours_rows:
        lines.append(r"\midrule")
    for row in ours_rows:
        suffix = f" ({variant_label(row.variant)})" if len(ours_rows) > 1 and row.variant else ""
        stats = [("%Imp", lambda c: f"{c.imp_pct:+.2f}\\%"), ("p", lambda c: fmt_p(c.p_value))]
        if holm:
            stats.append(("p (Holm)", lambda c: fmt_p(c.p_holm)))
        for name, fmt in stats:
            cells = ["" if (c := by_key.get((row, d, m))) is None else fmt(c) for d, m in cols]
            lines.append(tex_escape(name + suffix) + " & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())

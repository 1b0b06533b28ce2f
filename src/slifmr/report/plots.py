"""Figures of the paper's studies from result records (matplotlib, Agg backend):

- sensitivity (Fig. 6): metric vs one swept hyper-parameter, a line per dataset, error bars =
  std over seeds; log x for model.consistency.gamma (and any positive grid spanning >= 100x);
- robustness (Fig. 7): metric vs noise ratio, a panel per noise kind, a line per model;
- interval (Table IV): metric vs training time, one point per model.self_loop.interval.

Which apply is read from the records' swept overrides (:func:`detect_studies`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from slifmr.report.aggregate import KEY_NAMES, MODEL_NAMES, common_overrides, config_value, metric_label, overrides_of
from slifmr.report.records import ReportError

NOISE_KEYS = ("noise.interaction", "noise.kg", "noise.modality")
INTERVAL_KEY = "model.self_loop.interval"
LOG_KEYS = {"model.consistency.gamma"}
KEY_LABELS = KEY_NAMES  # one name table for figures and tables (aggregate.KEY_NAMES)
KINDS = ("sensitivity", "robustness", "interval")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _float(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def swept_keys(records: list[dict[str, Any]]) -> list[str]:
    """Override keys whose value differs between records (seed and bookkeeping keys excluded)."""
    values: dict[str, set[str]] = defaultdict(set)
    for r in records:
        for k, v in overrides_of(r).items():
            values[k].add(v)
    present = {k for r in records for k in overrides_of(r)}
    return sorted(k for k in present if len(values[k]) > 1)


def detect_studies(records: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """[(kind, key)] of the plots these records support, from their swept overrides."""
    studies: list[tuple[str, str | None]] = []
    swept = swept_keys(records)
    if any(k in NOISE_KEYS for k in swept):
        studies.append(("robustness", None))
    if INTERVAL_KEY in swept:
        studies.append(("interval", INTERVAL_KEY))
    for k in swept:
        if k in NOISE_KEYS or k == INTERVAL_KEY:
            continue
        xs = [_float(config_value(r, k)) for r in records if k in overrides_of(r)]
        if xs and all(x is not None for x in xs):
            studies.append(("sensitivity", k))
    return studies


def _label_of(records: list[dict[str, Any]], drop: set[str], with_dataset: bool, with_model: bool) -> Callable:
    """A function giving a record's line label: dataset / model / the overrides left."""
    common = set(common_overrides(records))

    def label(r: dict[str, Any]) -> str:
        parts = []
        if with_dataset:
            parts.append(str(r["dataset"]))
        if with_model:
            parts.append(MODEL_NAMES.get(r["model"], r["model"]))
        rest = " ".join(f"{k}={v}" for k, v in sorted(overrides_of(r).items()) if k not in drop and k not in common)
        if rest:
            parts.append(rest)
        return ", ".join(parts) or MODEL_NAMES.get(r["model"], r["model"])

    return label


def series(records: list[dict[str, Any]], x_of: Callable, label_of: Callable, y_of: Callable,
           spread_of: Callable | None = None) -> dict[str, list[tuple[float, float, float, int]]]:
    """{line label: [(x, mean y, std y (0 with one seed), n) sorted by x]}. A point made of one
    summary record (``records_from_csv``) takes its std and n from ``spread_of(record)``."""
    groups: dict[str, dict[float, list[tuple[float, dict]]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        x, y = x_of(r), y_of(r)
        if x is None or y is None:
            continue
        groups[label_of(r)][x].append((y, r))
    out = {}
    for lab, pts in groups.items():
        line = []
        for x, v in sorted(pts.items()):
            ys = [y for y, _ in v]
            given = spread_of(v[0][1]) if spread_of is not None and len(v) == 1 else None
            if given is not None:
                line.append((x, float(ys[0]), float(given[0]), int(given[1])))
            else:
                line.append((x, float(np.mean(ys)), float(np.std(ys, ddof=1)) if len(ys) > 1 else 0.0, len(ys)))
        out[lab] = line
    return dict(sorted(out.items()))


def _test_metric(metric: str) -> Callable:
    return lambda r: (r.get("test") or {}).get(metric)


def _summary_spread(key: str) -> Callable:
    """(std, n) of a summary record's ``key`` (a metric, or ``fit_s``); None for a run's record."""
    def spread(r: dict[str, Any]) -> tuple[float, int] | None:
        s = (r.get("summary") or {}).get(key)
        return (s["std"], s["n"]) if s else None
    return spread


def _n_runs(recs: list[dict[str, Any]], dataset: str) -> int:
    """Seeds behind one dataset's points: distinct seeds of its records, or a summary's n."""
    mine = [r for r in recs if r["dataset"] == dataset]
    if any("summary" in r for r in mine):
        return max((s["n"] for r in mine for s in r["summary"].values()), default=1)
    return len({r.get("seed") for r in mine})


FORMATS = ("png", "pdf", "svg")
DPI = 300  # print resolution: a figure placed at column width stays sharp


def _save(fig, path: Path, formats: tuple[str, ...] = ("png",)) -> Path:
    """``path`` in each of ``formats`` (same stem), each written to a temporary name and renamed;
    returns the first file written."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ReportError(f"unknown figure format(s) {unknown or formats}: choose from {', '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        tmp = target.with_name(f".{target.stem}.tmp.{fmt}")
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight", format=fmt)
        tmp.replace(target)
        written.append(target)
    _plt().close(fig)
    return written[0]


def _axes_grid(n_rows: int, n_cols: int, w: float = 4.6, h: float = 3.5):
    plt = _plt()
    # constrained layout keeps one panel's tick labels off the next panel's axis label
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(w * n_cols, h * n_rows), squeeze=False,
                             layout="constrained")
    return fig, axes


def sensitivity_plot(records: list[dict[str, Any]], key: str, metrics: list[str], out: Path, formats: tuple[str, ...] = ("png",)) -> Path:
    """Fig. 6 style: one panel per metric, x = ``key``, a line per dataset (and model/variant)."""
    recs = [r for r in records if key in overrides_of(r) and _float(config_value(r, key)) is not None]
    if not recs:
        raise ReportError(f"no record overrides '{key}': nothing to plot a sensitivity curve of")
    multi_model = len({r["model"] for r in recs}) > 1
    label = _label_of(recs, {key}, with_dataset=True, with_model=multi_model)
    xs = sorted({_float(config_value(r, key)) for r in recs})
    log_x = key in LOG_KEYS or (xs[0] > 0 and xs[-1] / xs[0] >= 100)
    fig, axes = _axes_grid(1, len(metrics))
    for ax, m in zip(axes[0], metrics):
        for lab, pts in series(recs, lambda r: _float(config_value(r, key)), label, _test_metric(m),
                               _summary_spread(m)).items():
            x, y, e, _ = zip(*pts)
            ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=lab)
        if log_x:
            ax.set_xscale("log")
        elif len(xs) <= 12:
            ax.set_xticks(xs)
            ax.set_xticklabels([f"{v:g}" for v in xs])
        ax.set_xlabel(KEY_LABELS.get(key, key) + (" (log scale)" if log_x else ""))
        ax.set_ylabel(f"test {metric_label(m)}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, title="dataset")
    n_seeds = max(_n_runs(recs, d) for d in {r["dataset"] for r in recs})
    spread = f"mean ± std over {n_seeds} seeds" if n_seeds > 1 else "one seed"
    fig.suptitle(f"Sensitivity to {KEY_LABELS.get(key, key)} ({spread})")
    return _save(fig, out / f"sensitivity_{_safe(key)}.png", formats)


def robustness_plot(records: list[dict[str, Any]], metrics: list[str], out: Path, formats: tuple[str, ...] = ("png",)) -> Path:
    """Fig. 7 style: rows = metrics, a panel per noise kind (x = noise ratio in %, the other
    kinds at 0), a line per model (and variant)."""
    recs = [r for r in records if any(k in overrides_of(r) for k in NOISE_KEYS)]
    kinds = [k for k in NOISE_KEYS if any(k in overrides_of(r) for r in recs)]
    if not kinds:
        raise ReportError("no record overrides noise.*: nothing to plot robustness curves of")
    multi_ds = len({r["dataset"] for r in recs}) > 1
    label = _label_of(recs, set(NOISE_KEYS), with_dataset=multi_ds, with_model=True)
    fig, axes = _axes_grid(len(metrics), len(kinds))
    for i, m in enumerate(metrics):
        for j, kind in enumerate(kinds):
            ax = axes[i][j]
            others = [k for k in NOISE_KEYS if k != kind]
            panel = [r for r in recs if all((_float(config_value(r, k)) or 0.0) == 0.0 for k in others)]
            x_of = lambda r, kind=kind: (None if _float(config_value(r, kind)) is None  # noqa: E731
                                         else 100 * _float(config_value(r, kind)))
            for lab, pts in series(panel, x_of, label, _test_metric(m), _summary_spread(m)).items():
                x, y, e, _ = zip(*pts)
                ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=lab)
            ax.set_xlabel(f"{KEY_LABELS.get(kind, kind)} ratio (%)")
            ax.set_ylabel(f"test {metric_label(m)}")
            ax.set_title(KEY_LABELS.get(kind, kind))
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, title="model")
    n = max(_n_runs(recs, d) for d in {r["dataset"] for r in recs})
    spread = f"mean ± std over {n} seeds" if n > 1 else "one seed"
    fig.suptitle(f"Robustness to noise ({spread}; test split never noised)")
    return _save(fig, out / "robustness.png", formats)


def interval_rows(records: list[dict[str, Any]], metrics: list[str]) -> list[dict[str, Any]]:
    """Table IV rows: per (line, interval) the metric and training-time means/stds over seeds."""
    recs = [r for r in records if INTERVAL_KEY in overrides_of(r)]
    if not recs:
        raise ReportError(f"no record overrides '{INTERVAL_KEY}': no interval trade-off to show")
    multi_model = len({r["model"] for r in recs}) > 1
    label = _label_of(recs, {INTERVAL_KEY}, with_dataset=True, with_model=multi_model)
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in recs:
        groups[(label(r), int(_float(config_value(r, INTERVAL_KEY))))].append(r)
    rows = []
    for (lab, interval), rs in sorted(groups.items()):
        t = [(r.get("time_s") or {}).get("fit") or (r.get("time_s") or {}).get("total") for r in rs]
        t = [x for x in t if x is not None]
        summary = rs[0].get("summary") if len(rs) == 1 else None  # a row of a committed interval.csv
        row = {"line": lab, "interval": interval, "n": summary["fit_s"]["n"] if summary else len(rs),
               "fit_s_mean": float(np.mean(t)) if t else math.nan,
               "fit_s_std": float(np.std(t, ddof=1)) if len(t) > 1 else math.nan,
               "epochs_mean": float(np.mean([r.get("epochs") or 0 for r in rs]))}
        if summary and row["n"] > 1:
            row["fit_s_std"] = summary["fit_s"]["std"]
        for m in metrics:
            v = [float(r["test"][m]) for r in rs if m in (r.get("test") or {})]
            row[f"{m}_mean"] = float(np.mean(v)) if v else math.nan
            row[f"{m}_std"] = float(np.std(v, ddof=1)) if len(v) > 1 else math.nan
            if summary and m in summary and summary[m]["n"] > 1:
                row[f"{m}_std"] = summary[m]["std"]
        rows.append(row)
    return rows


def interval_plot(records: list[dict[str, Any]], metrics: list[str], out: Path, formats: tuple[str, ...] = ("png",)) -> Path:
    """Table IV as a picture: test metric vs training time, points labelled by the interval."""
    rows = interval_rows(records, metrics)
    fig, axes = _axes_grid(1, len(metrics), w=5.2, h=3.8)
    for ax, m in zip(axes[0], metrics):
        for lab in dict.fromkeys(r["line"] for r in rows):
            pts = sorted((r for r in rows if r["line"] == lab), key=lambda r: r["fit_s_mean"])
            x = [p["fit_s_mean"] for p in pts]
            y = [p[f"{m}_mean"] for p in pts]
            ax.errorbar(x, y, xerr=[0 if math.isnan(p["fit_s_std"]) else p["fit_s_std"] for p in pts],
                        yerr=[0 if math.isnan(p[f"{m}_std"]) else p[f"{m}_std"] for p in pts],
                        marker="o", capsize=3, label=lab)
            for p in pts:
                ax.annotate(f"every {p['interval']}", (p["fit_s_mean"], p[f"{m}_mean"]),
                            textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel("training time (s, trainer.fit wall clock)")
        ax.set_ylabel(f"test {metric_label(m)}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, title="dataset")
    fig.suptitle("Quality vs training time by self-loop refresh interval (epochs)")
    return _save(fig, out / "interval_tradeoff.png", formats)


def _safe(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in s)


def make_plots(records: list[dict[str, Any]], metrics: list[str], out: Path, kind: str | None = None,
               x: str | None = None, formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """The plots that apply (or the one asked for), each in every one of ``formats``; returns the
    first file of each."""
    if kind is not None:
        if kind not in KINDS:
            raise ReportError(f"unknown plot '{kind}' (one of {', '.join(KINDS)})")
        if kind == "sensitivity" and not x:
            raise ReportError("--plot sensitivity needs --x <swept key>, e.g. --x model.L")
        studies = [(kind, x)]
    else:
        studies = detect_studies(records)
    paths = []
    for k, key in studies:
        if k == "sensitivity":
            paths.append(sensitivity_plot(records, key, metrics, out, formats))
        elif k == "robustness":
            paths.append(robustness_plot(records, metrics, out, formats))
        else:
            paths.append(interval_plot(records, metrics, out, formats))
    return paths

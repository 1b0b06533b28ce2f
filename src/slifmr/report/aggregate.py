"""Records -> cells: group runs by (model, variant, dataset), mean ± std over seeds, best
baseline and %Imp of ours per dataset and metric (the paper's Table II).

A *variant* is what distinguishes runs of one model besides seed and dataset: the run's
command-line overrides minus bookkeeping keys (paths, logger, devices, ...) and minus
overrides that every record in the report shares (those are reported once as "common").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slifmr.report.records import ReportError

# Keys that never make a variant: the row/column keys themselves, and where/how a run ran.
IGNORED_KEYS = {
    "seed", "model", "dataset", "dataset.path", "dataset.cache_dir", "sweep", "sweep_name", "tags", "task_name",
    "dry_run", "skip_completed",
    "ckpt_path", "resume", "trainer", "trainer.accelerator", "trainer.devices", "trainer.num_nodes",
    "trainer.strategy", "trainer.enable_progress_bar", "logger", "debug", "callbacks.progress_bar",
}
IGNORED_PREFIXES = ("paths.", "hydra.", "logger.", "hydra/")

MODEL_NAMES = {
    "pop": "Pop", "mf": "MF-BPR", "lightgcn": "LightGCN", "ngcf": "NGCF", "vbpr": "VBPR", "mmgcn": "MMGCN",
    "grcn": "GRCN", "lattice": "LATTICE", "bm3": "BM3", "freedom": "FREEDOM", "tmfun": "TMFUN", "diffmm": "DiffMM", "cke": "CKE", "kgat": "KGAT",
    "kgin": "KGIN", "kgcl": "KGCL", "kacl": "KACL", "kgrec": "KGRec", "krdn": "KRDN", "mkgat": "MKGAT",
    "diffkg": "DiffKG", "slifmr": "SLIF-MR",
}
MODEL_ORDER = list(MODEL_NAMES)

METRIC_NAMES = {"recall": "Recall", "ndcg": "NDCG", "precision": "Precision"}

# Readable names of the config keys the paper's studies sweep (figure axes and table rows)
KEY_NAMES = {
    "model.L": "GNN layers L",
    "model.consistency.beta": "inter-modal consistency weight β",
    "model.consistency.gamma": "intra-modal consistency weight γ",
    "model.self_loop.top_n": "self-loop neighbours top-N",
    "model.self_loop.interval": "self-loop refresh interval (epochs)",
    "noise.interaction": "interaction noise",
    "noise.kg": "KG noise",
    "noise.modality": "modality noise",
}


def key_label(key: str) -> str:
    """'model.L' -> 'GNN layers L'; a key without a readable name stays as spelt."""
    return KEY_NAMES.get(key, key)


def variant_label(variant: str) -> str:
    """'model.L=2 noise.kg=0.1' -> 'GNN layers L = 2, KG noise = 0.1'; 'tuned=cpu12' -> 'tuned: cpu12',
    'tuned=dir' (the points read from the searches' directory) -> 'tuned' (for people; CSVs keep the keys)."""
    parts = []
    for item in variant.split():
        key, sep, value = item.partition("=")
        if sep and key == "tuned":
            parts.append("tuned" if value == "dir" else f"tuned: {value}")
        else:
            parts.append(f"{key_label(key)} = {value}" if sep and key in KEY_NAMES else item)
    return ", ".join(parts)


def metric_label(metric: str) -> str:
    """'recall@20' -> 'Recall@20' (the paper's spelling)."""
    name, _, k = metric.partition("@")
    return f"{METRIC_NAMES.get(name, name)}@{k}" if k else METRIC_NAMES.get(name, name)


def parse_override(item: str) -> tuple[str, str]:
    """'++model.L=3' -> ('model.L', '3'); a deletion '~key' -> ('key', '~')."""
    item = item.strip()
    if item.startswith("~"):
        return item.lstrip("~").split("=", 1)[0], "~"
    key, _, value = item.lstrip("+").partition("=")
    return key.strip(), value.strip()


# SLIF-MR's knobs that moved under its model config (issue 11): records made before still read
MOVED_PREFIXES = ("consistency.", "self_loop.")


def canonical_key(key: str) -> str:
    """An override key as spelt now (``consistency.beta`` -> ``model.consistency.beta``)."""
    return f"model.{key}" if key.startswith(MOVED_PREFIXES) else key


def overrides_of(record: dict[str, Any]) -> dict[str, str]:
    """The record's overrides as {key: value}, bookkeeping keys removed, keys as spelt now."""
    out = {}
    for item in record.get("overrides") or []:
        key, value = parse_override(item)
        if key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES):
            continue
        out[canonical_key(key)] = value
    return out


def common_overrides(records: list[dict[str, Any]]) -> dict[str, str]:
    """Overrides every record has with the same value: settings of the whole report, not variants."""
    if not records:
        return {}
    common = overrides_of(records[0])
    for r in records[1:]:
        o = overrides_of(r)
        common = {k: v for k, v in common.items() if o.get(k) == v}
    return common


def variant_of(record: dict[str, Any], drop: set[str] | frozenset[str] = frozenset()) -> str:
    """'model.L=2 consistency.beta=0.5' (sorted by key), without the keys in ``drop``."""
    o = overrides_of(record)
    return " ".join(f"{k}={v}" for k, v in sorted(o.items()) if k not in drop)


def config_value(record: dict[str, Any], key: str) -> Any:
    """A dotted key of the record's resolved config (falls back to its override), or None."""
    node: Any = record.get("config") or {}
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            node = None
            break
        node = node[part]
    if node is None:
        node = overrides_of(record).get(key)
    return node


@dataclass(frozen=True)
class Row:
    """A table row: one model, one variant."""

    model: str
    variant: str = ""

    @property
    def label(self) -> str:
        name = MODEL_NAMES.get(self.model, self.model)
        return f"{name} ({self.variant})" if self.variant else name

    @property
    def display(self) -> str:
        """The label with readable key names, for Markdown and LaTeX tables."""
        name = MODEL_NAMES.get(self.model, self.model)
        return f"{name} ({variant_label(self.variant)})" if self.variant else name


@dataclass
class Stat:
    """Mean ± std (sample std, ddof=1; NaN with one seed) of one cell, and its records."""

    values: list[float]
    records: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else math.nan


@dataclass
class Comparison:
    """Ours vs the best baseline in one (dataset, metric) cell."""

    dataset: str
    metric: str
    ours: Row
    baseline: Row
    ours_mean: float
    baseline_mean: float
    imp_pct: float
    p_value: float = math.nan
    p_holm: float = math.nan  # Holm-adjusted over the report's family of tests (--holm), else NaN
    test: str = ""
    n_users: int = 0


@dataclass
class Table:
    """Rows x (dataset, metric) cells, plus what the rows share."""

    rows: list[Row]
    datasets: list[str]
    metrics: list[str]
    cells: dict[tuple[Row, str, str], Stat]
    common: dict[str, str]
    ours: str

    def repeated_seeds(self) -> list[str]:
        """'<row> on <dataset>: seeds [1, 1, 2]' for cells where a seed appears twice (a job run
        twice into different directories counts twice in mean ± std: worth a warning)."""
        out = []
        for (row, ds, m), st in self.cells.items():
            seeds = [r.get("seed") for r in st.records]
            if m == self.metrics[0] and len(set(seeds)) < len(seeds):
                out.append(f"{row.label} on {ds}: seeds {sorted(seeds, key=str)}")
        return out

    def get(self, row: Row, dataset: str, metric: str) -> Stat | None:
        return self.cells.get((row, dataset, metric))

    def is_ours(self, row: Row) -> bool:
        return row.model == self.ours

    def best_baseline(self, dataset: str, metric: str, variant: str | None = None) -> Row | None:
        """The non-ours row with the highest mean in this column (None if there is none); with
        ``variant``, only among the baselines run under that same variant."""
        best, best_mean = None, -math.inf
        for row in self.rows:
            st = self.get(row, dataset, metric)
            if self.is_ours(row) or st is None or not st.values or not st.mean > best_mean:
                continue
            if variant is not None and row.variant != variant:
                continue
            best, best_mean = row, st.mean
        return best

    def comparisons(self, baseline: Row | None = None) -> list[Comparison]:
        """%Imp of every ours row over the best baseline (or the given one) per column. In a study
        where the baselines ran under the same swept settings as ours (e.g. each noise level of
        Fig. 7), an ours row is compared with the best baseline of its own setting."""
        out = []
        variants = {row.variant for row in self.rows if not self.is_ours(row)}
        for dataset in self.datasets:
            for metric in self.metrics:
                for row in self.rows:
                    st = self.get(row, dataset, metric)
                    if not self.is_ours(row) or st is None or row == baseline:
                        continue  # (a fixed baseline may be an ours row: Table III's full model)
                    same = row.variant if row.variant in variants and len(variants) > 1 else None
                    base = baseline or self.best_baseline(dataset, metric, same)
                    bst = self.get(base, dataset, metric) if base is not None else None
                    if bst is None:
                        continue
                    imp = (st.mean - bst.mean) / bst.mean * 100 if bst.mean else math.nan
                    out.append(Comparison(dataset, metric, row, base, st.mean, bst.mean, imp))
        return out


def _variant_key(variant: str) -> tuple:
    """Variants in natural order: numeric values compare as numbers (1e-05 < 0.001 < 0.1)."""
    parts = []
    for item in variant.split():
        key, _, value = item.partition("=")
        try:
            parts.append((key, 0, float(value), ""))
        except ValueError:
            parts.append((key, 1, 0.0, value))
    return tuple(parts)


def _row_key(row: Row, ours: str) -> tuple:
    order = MODEL_ORDER.index(row.model) if row.model in MODEL_ORDER else len(MODEL_ORDER)
    return (row.model == ours, order, row.model, row.variant != "", _variant_key(row.variant))


def aggregate(records: list[dict[str, Any]], metrics: list[str], ours: str = "slifmr",
              drop: set[str] | frozenset[str] = frozenset()) -> Table:
    """Group records into rows and cells; ``drop`` removes keys from variants (e.g. a swept key)."""
    if not records:
        raise ReportError("no records to aggregate")
    common = common_overrides(records)
    drop = set(drop) | set(common)
    cells: dict[tuple[Row, str, str], Stat] = {}
    rows: set[Row] = set()
    datasets: list[str] = []
    for r in records:
        row = Row(str(r["model"]), variant_of(r, drop))
        rows.add(row)
        ds = str(r["dataset"])
        if ds not in datasets:
            datasets.append(ds)
        test = r.get("test") or {}
        for m in metrics:
            if m not in test:
                raise ReportError(f"record {r.get('_path')} has no test metric '{m}' "
                                  f"(it has: {', '.join(sorted(test)) or 'none'})")
            st = cells.setdefault((row, ds, m), Stat([]))
            st.values.append(float(test[m]))
            st.records.append(r)
    return Table(sorted(rows, key=lambda x: _row_key(x, ours)), sorted(datasets), list(metrics), cells,
                 common, ours)


def find_row(table: Table, spec: str) -> Row:
    """A row from its label, model name, 'model variant' or, where one row has it, its variant alone
    (for --baseline; e.g. ``ablation=full``, Table III's full model, a spec without spaces as a
    docs marker needs)."""
    for row in table.rows:
        if spec in (row.label, row.model, f"{row.model} {row.variant}".strip()):
            return row
    by_variant = [row for row in table.rows if row.variant and row.variant == spec]
    if len(by_variant) == 1:
        return by_variant[0]
    raise ReportError(f"no row '{spec}' in the report; rows: {', '.join(r.label for r in table.rows)}")

"""Paired significance over per-user test metrics: ours vs a baseline on the same test users.

Seeds are pooled by averaging each user's value over the seeds of a row (the test split is
fixed by ``dataset.split_seed``, so the same users are tested in every seed); users are then
paired by id. The test is the Wilcoxon signed-rank test (two-sided, zero differences dropped)
or, on request (``--test ttest``), scipy's paired t-test.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from slifmr.report.records import ReportError, load_per_user

POOLING = "per-user mean over seeds, users paired by id"


def have_scipy() -> bool:
    try:
        import scipy.stats  # noqa: F401
    except ImportError:
        return False
    return True


def pooled_per_user(records: list[dict[str, Any]], metric: str) -> dict[int, float] | None:
    """{user id: mean over the records (seeds) that tested the user}, or None if any record
    lacks per-user values."""
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    for r in records:
        pu = load_per_user(r)
        if pu is None:
            return None
        if metric not in pu:
            raise ReportError(f"per-user values of {r.get('_path')} have no '{metric}'")
        for u, v in zip(pu["user"].tolist(), pu[metric].tolist()):
            if v == v:  # NaN: user without ground truth
                sums[u] = sums.get(u, 0.0) + v
                counts[u] = counts.get(u, 0) + 1
    return {u: sums[u] / counts[u] for u in sums}


def paired(a: dict[int, float], b: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
    """Values of the users both have, in user id order."""
    users = sorted(set(a) & set(b))
    return np.array([a[u] for u in users]), np.array([b[u] for u in users])


# -- the tests ------------------------------------------------------------------------------------------
ROUNDING = 1e-12  # relative: differences this small are float rounding of equal values, not differences


def differences(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``x - y`` with rounding-level differences set to 0. Pooling a user's value over 3 seeds and
    over 5 seeds of the same value gives means that differ in the last bit (``(v + v + v) / 3`` is not
    always ``v``); the Wilcoxon test drops zero differences but would count those as signed ranks, and
    two identical rows (Pop, 3 seeds vs 5) came out "different" at p = 3e-5."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    d = x - y
    scale = np.maximum(1.0, np.maximum(np.abs(x), np.abs(y)))
    d[np.abs(d) <= ROUNDING * scale] = 0.0
    return d


def paired_t_test(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(t, two-sided p) of the paired t-test of x - y: ``scipy.stats.ttest_rel``, with the two
    cases it answers with NaN made explicit (fewer than 2 pairs: NaN; no spread: p = 1 when
    every difference is 0, else 0)."""
    from scipy.stats import ttest_1samp

    d = differences(x, y)
    if len(d) < 2:
        return math.nan, math.nan
    if float(d.std(ddof=1)) == 0.0:
        mean = float(d.mean())
        return (math.nan, 1.0) if mean == 0.0 else (math.copysign(math.inf, mean), 0.0)
    res = ttest_1samp(d, 0.0)  # = ttest_rel(x, y) on the rounding-cleaned differences
    return float(res.statistic), float(res.pvalue)


def wilcoxon(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(statistic, two-sided p) of scipy's Wilcoxon signed-rank test; p = 1 when every
    difference is zero (scipy refuses that case)."""
    from scipy.stats import wilcoxon as _wilcoxon

    d = differences(x, y)
    if len(d) == 0:
        return math.nan, math.nan
    if not np.any(d != 0):
        return 0.0, 1.0
    res = _wilcoxon(d, zero_method="wilcox", alternative="two-sided")  # = wilcoxon(x, y) on the cleaned d
    return float(res.statistic), float(res.pvalue)


def paired_test(x: np.ndarray, y: np.ndarray, method: str = "auto") -> tuple[str, float]:
    """(test name, p-value) with ``method`` 'wilcoxon', 'ttest' or 'auto' (Wilcoxon if scipy)."""
    if method == "auto":
        method = "wilcoxon" if have_scipy() else "ttest"
    if method == "wilcoxon":
        return "Wilcoxon signed-rank", wilcoxon(x, y)[1]
    if method == "ttest":
        return "paired t-test", paired_t_test(x, y)[1]
    raise ReportError(f"unknown test '{method}' (wilcoxon, ttest or auto)")


def compare_rows(ours: list[dict[str, Any]], baseline: list[dict[str, Any]], metric: str,
                 method: str = "auto") -> tuple[str, float, int]:
    """(test, p, users paired) between two rows' records in one (dataset, metric) cell;
    p is NaN when per-user values are missing."""
    a, b = pooled_per_user(ours, metric), pooled_per_user(baseline, metric)
    if a is None or b is None:
        return "", math.nan, 0
    x, y = paired(a, b)
    name, p = paired_test(x, y, method)
    return name, p, len(x)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input's order (scipy has no Holm).

    A study tests many (dataset, metric, variant) cells; Holm controls the family-wise error
    over them without Bonferroni's loss of power. Sorted ascending p_(1) <= ... <= p_(m), the
    adjusted p_(i) = max over j <= i of min(1, (m - j + 1) p_(j)). NaN p-values (no per-user
    values) are not tests: they stay NaN and do not count in m."""
    idx = sorted((i for i, p in enumerate(p_values) if p == p), key=lambda i: p_values[i])
    m = len(idx)
    out = [math.nan] * len(p_values)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out

"""Paired significance over per-user test metrics: ours vs a baseline on the same test users.

Seeds are pooled by averaging each user's value over the seeds of a row (the test split is
fixed by ``dataset.split_seed``, so the same users are tested in every seed); users are then
paired by id. The test is the Wilcoxon signed-rank test (two-sided, zero differences dropped)
when scipy is available, else a paired t-test computed here (Student t tail via the
regularised incomplete beta function), so a report never needs scipy.
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
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def paired_t_test(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(t, two-sided p) of the paired t-test of x - y, as scipy.stats.ttest_rel."""
    d = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    n = len(d)
    if n < 2:
        return math.nan, math.nan
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:
        return (math.nan, 1.0) if mean == 0.0 else (math.copysign(math.inf, mean), 0.0)
    t = mean / (sd / math.sqrt(n))
    df = n - 1
    return t, betainc(df / 2.0, 0.5, df / (df + t * t))


def wilcoxon(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(statistic, two-sided p) of scipy's Wilcoxon signed-rank test; p = 1 when every
    difference is zero (scipy refuses that case)."""
    from scipy.stats import wilcoxon as _wilcoxon

    d = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    if len(d) == 0:
        return math.nan, math.nan
    if not np.any(d != 0):
        return 0.0, 1.0
    res = _wilcoxon(x, y, zero_method="wilcox", alternative="two-sided")
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

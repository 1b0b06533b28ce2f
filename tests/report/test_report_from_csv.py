"""Re-plotting a study from its committed results.csv / interval.csv (no run records): the points
and error bars equal those the records give (build_docs --from-csv: tests/report/test_build_docs.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slifmr.report.aggregate import config_value
from slifmr.report.cli import _interval_tables, main, report
from slifmr.report.plots import _summary_spread, _test_metric, interval_rows, series
from slifmr.report.records import ReportError, load_records, records_from_csv
from synthetic_records import make_record


def _sweep(root: Path, key: str, values, seeds=(1, 2, 3), datasets=("toy", "toy2"), time_of=None) -> None:
    rng = np.random.default_rng(7)
    for ds in datasets:
        for v in values:
            for seed in seeds:
                make_record(root, "slifmr", seed, {"recall@20": rng.random(30), "ndcg@20": rng.random(30)},
                            dataset=ds, extra=[f"{key}={v}"], time_fit=time_of(v, seed) if time_of else 10.0)


def test_sensitivity_points_from_the_csv_equal_those_from_the_records(tmp_path):
    _sweep(tmp_path / "sweep", "model.L", (1, 2, 3))
    report([tmp_path / "sweep"], tmp_path / "out", plot="none")
    records = load_records([tmp_path / "sweep"])
    rows = records_from_csv([tmp_path / "out" / "results.csv"])
    assert len(rows) == 3 * 2 and {r["dataset"] for r in rows} == {"toy", "toy2"}

    def x(r):
        return float(config_value(r, "model.L"))

    def label(r):
        return r["dataset"]

    for m in ("recall@20", "ndcg@20"):
        want = series(records, x, label, _test_metric(m))  # mean, sample std over the 3 seeds, n = 3
        got = series(rows, x, label, _test_metric(m), _summary_spread(m))
        assert got.keys() == want.keys()
        for lab in want:
            assert [p[0] for p in got[lab]] == [p[0] for p in want[lab]]
            assert [p[3] for p in got[lab]] == [3, 3, 3]
            np.testing.assert_allclose([p[1:3] for p in got[lab]], [p[1:3] for p in want[lab]], rtol=1e-12)
            assert min(p[2] for p in want[lab]) > 0  # a real spread, not zeros on both sides


def test_interval_rows_from_interval_csv_equal_those_from_the_records(tmp_path):
    _sweep(tmp_path / "sweep", "model.self_loop.interval", (1, 5), seeds=(1, 2), datasets=("toy",),
           time_of=lambda v, seed: 100.0 / v + 3 * seed)
    metrics = ["recall@20"]
    want = interval_rows(load_records([tmp_path / "sweep"]), metrics)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "interval.csv").write_text(_interval_tables(want, metrics)[0])  # as report writes it
    got = interval_rows(records_from_csv([tmp_path / "out" / "interval.csv"]), metrics)
    assert [(r["line"], r["interval"], r["n"]) for r in got] == [(r["line"], r["interval"], r["n"]) for r in want]
    for g, w in zip(got, want):
        for k in ("fit_s_mean", "fit_s_std", "recall@20_mean", "recall@20_std", "epochs_mean"):
            assert g[k] == pytest.approx(w[k], rel=1e-9), k


def test_cli_from_csv_writes_png_and_pdf_and_bad_csvs_are_named(tmp_path, capsys):
    _sweep(tmp_path / "sweep", "model.consistency.gamma", ("0.001", "0.1"), seeds=(1,), datasets=("toy",))
    report([tmp_path / "sweep"], tmp_path / "out", plot="none")
    code = main(["--from-csv", str(tmp_path / "out" / "results.csv"), "--out", str(tmp_path / "figs"),
                 "--format", "png,pdf", "--metrics", "recall@20"])
    assert code == 0, capsys.readouterr().err
    for ext, magic in (("png", b"\x89PNG"), ("pdf", b"%PDF")):
        assert (tmp_path / "figs" / f"sensitivity_model.consistency.gamma.{ext}").read_bytes()[:4] == magic
    bad = tmp_path / "bad.csv"
    bad.write_text("model,variant,label,toy/recall@20/mean,toy/recall@20/std,toy/recall@20/n\n"
                   "slifmr,model.L=1,x,0.3,,1\nslifmr,model.L=2,x,zero,,1\n")
    with pytest.raises(ReportError, match=r"bad.csv line 3, column toy/recall@20/mean: 'zero' is not a number"):
        records_from_csv([bad])
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    assert main(["--from-csv", str(other)]) == 2
    assert "not a slifmr.report results.csv" in capsys.readouterr().err

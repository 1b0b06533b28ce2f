"""Tiny end to end: 1-epoch runs on ml-100k-kg-tiny -> slifmr.report -> numbers in the tables
equal those in the records (and the paired test equals one recomputed from the sidecars)."""

from __future__ import annotations

import csv
import statistics

import numpy as np
import pytest

from slifmr.report import load_per_user, load_records
from slifmr.report.cli import main
from slifmr.report.significance import paired_test
from slifmr.train import train
from hydra_compose import make_cfg


def test_two_seeds_and_ours_to_report(tmp_path, shared_data):
    runs = tmp_path / "multirun"
    for i, (model, seed) in enumerate((("mf", 1), ("mf", 2), ("slifmr", 1))):
        train(make_cfg(runs / str(i), [
            "dataset=ml-100k-kg-tiny", f"paths.data_dir={shared_data}", f"model={model}", f"seed={seed}",
            "trainer.max_epochs=1", "callbacks.progress_bar=null",
        ]))
    assert main([str(runs), "--out", str(tmp_path / "report"), "--metrics", "recall@20", "ndcg@10"]) == 0

    records = load_records([runs])
    rows = {r["model"]: r for r in csv.DictReader(open(tmp_path / "report" / "results.csv"))}
    assert set(rows) == {"mf", "slifmr"} and rows["mf"]["variant"] == ""
    for m in ("recall@20", "ndcg@10"):
        mf = [r["test"][m] for r in records if r["model"] == "mf"]
        assert float(rows["mf"][f"ml-100k-kg-tiny/{m}/mean"]) == pytest.approx(statistics.mean(mf), abs=1e-12)
        assert float(rows["mf"][f"ml-100k-kg-tiny/{m}/std"]) == pytest.approx(statistics.stdev(mf), abs=1e-12)
        [ours] = [r["test"][m] for r in records if r["model"] == "slifmr"]
        assert float(rows["slifmr"][f"ml-100k-kg-tiny/{m}/mean"]) == pytest.approx(ours, abs=1e-12)
        assert rows["slifmr"][f"ml-100k-kg-tiny/{m}/std"] == ""  # one seed: no std

    comps = {c["metric"]: c for c in csv.DictReader(open(tmp_path / "report" / "comparisons.csv"))}
    mf_pu = [load_per_user(r) for r in records if r["model"] == "mf"]
    [ours_pu] = [load_per_user(r) for r in records if r["model"] == "slifmr"]
    assert np.array_equal(mf_pu[0]["user"], mf_pu[1]["user"])  # same split: same test users
    for m in ("recall@20", "ndcg@10"):
        c = comps[m]
        mf_mean = statistics.mean(r["test"][m] for r in records if r["model"] == "mf")
        assert float(c["imp_pct"]) == pytest.approx((float(rows["slifmr"][f"ml-100k-kg-tiny/{m}/mean"]) - mf_mean)
                                                    / mf_mean * 100, rel=1e-9)
        base = (mf_pu[0][m] + mf_pu[1][m]) / 2
        name, p = paired_test(ours_pu[m], base)
        assert c["test"] == name and float(c["p_value"]) == pytest.approx(p, rel=1e-9)
        assert int(c["n_users"]) == len(ours_pu["user"])
    md = (tmp_path / "report" / "results.md").read_text()
    assert "| MF-BPR | 2 |" in md and "| SLIF-MR | 1 |" in md and "%Imp" in md

"""A real (tiny) study sweep end to end: `python -m slifmr.train -m +sweep=fig6_layers` with two
jobs of one epoch on ml-100k-kg-tiny, then `slifmr.report` on its directory: the table and
the sensitivity PNG exist, and the table's numbers are the records' numbers."""

from __future__ import annotations

import csv
import sys

import pytest
from hydra.core.global_hydra import GlobalHydra

from slifmr.report import load_records
from slifmr.report.cli import main as report_main


def test_two_job_sweep_to_report(monkeypatch, capsys, tmp_path, shared_data):
    from slifmr.train import main

    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", [
        "slifmr.train", "-m", "+sweep=fig6_layers", "model.L=1,2", "seed=1", "dataset=ml-100k-kg-tiny",
        f"paths.data_dir={shared_data}", f"paths.log_dir={tmp_path}", "trainer.max_epochs=1",
        "callbacks.progress_bar=null", "model.kg_attention_every=4",
    ])
    try:
        main()
    finally:
        GlobalHydra.instance().clear()
    sweep_dir = tmp_path / "sweeps" / "fig6_layers"
    assert f"python -m slifmr.report {sweep_dir}" in capsys.readouterr().out  # the sweep's last line
    for job in (0, 1):  # each job's log says which job it is, and ends with the closing block
        log = next(sweep_dir.glob(f"ml-100k-kg-tiny/*L={job + 1}*/train.log")).read_text()
        assert f"job {job}: " in log and "run finished (job " in log
    records = load_records([sweep_dir])
    assert sorted(r["config"]["model"]["L"] for r in records) == [1, 2]
    assert all(r["sweep_name"] == "fig6_layers" and r["dataset"] == "ml-100k-kg-tiny" for r in records)

    out = tmp_path / "report"
    assert report_main([str(sweep_dir), "--out", str(out), "--metrics", "recall@20"]) == 0
    png = out / "sensitivity_model.L.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    rows = list(csv.DictReader(open(out / "results.csv")))
    by_l = {r["variant"]: r for r in rows}
    assert set(by_l) == {"model.L=1", "model.L=2"}
    for rec in records:
        row = by_l[f"model.L={rec['config']['model']['L']}"]
        assert float(row["ml-100k-kg-tiny/recall@20/mean"]) == pytest.approx(rec["test"]["recall@20"], abs=1e-12)

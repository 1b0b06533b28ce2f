"""The side-information study's report on hand-made records with known per-user values: cells,
% differences, the issue's target checks and the diagnostics rows."""

from __future__ import annotations

import numpy as np
import pytest

from slifmr.records import SCHEMA, write_record
from slifmr.report.records import ReportError
from slifmr.report.side_info import report

N_USERS = 40


def record(root, arm: str, dataset: str, seed: int, recall: float, val: dict | None = None, shares=()):
    """One run's record and per-user values, laid out as the side_info sweep writes them."""
    model = arm.split("_")[0]
    per_user = np.full(N_USERS, recall)
    per_user[::2] += 0.01 * seed  # a spread over users, mean moved by seed
    per_user[1::2] -= 0.01 * seed
    rec = {
        "schema": SCHEMA, "status": "completed", "model": model, "dataset": dataset, "seed": seed,
        "overrides": [f"+arm={arm}", f"seed={seed}", f"dataset.per_user={dataset.split('-')[1][1:]}",
                      f"dataset.side={dataset.split('-')[2]}", "+sweep=side_info"],
        "config": {"seed": seed}, "test": {"recall@20": float(per_user.mean())},
        "val": dict(val or {}), "best_epoch": 3, "epochs": 5,
        "self_loop_history": [{"epoch": e, "g_share": s} for e, s in enumerate(shares)],
    }
    write_record(root / f"{dataset}/{arm},seed={seed}", rec,
                 {"user": np.arange(N_USERS), "recall@20": per_user})


def test_side_info_report(tmp_path):
    diag = {"recall@20": 0.3, "view_interaction/recall@20": 0.28, "view_feature/recall@20": 0.2,
            "view_kg/recall@20": 0.1, "fusion_weight/interaction": 0.5, "fusion_weight/feature": 0.3,
            "fusion_weight/kg": 0.2, "fusion_weight_std/kg": 0.05}
    means = {  # (arm, dataset) -> test recall
        ("lightgcn", "synth-u5-informative"): 0.20, ("slifmr", "synth-u5-informative"): 0.22,
        ("slifmr_wo_kg", "synth-u5-informative"): 0.219, ("lightgcn", "synth-u5-noise"): 0.20,
        ("slifmr", "synth-u5-noise"): 0.19, ("slifmr_wo_kg", "synth-u5-noise"): 0.18,
    }
    for (arm, ds), m in means.items():
        for seed in (1, 2):
            record(tmp_path, arm, ds, seed, m, diag if arm == "slifmr" else {"recall@20": 0.25},
                   shares=(0.1, 0.2 + 0.1 * seed) if arm == "slifmr" else ())
    md = report([tmp_path], tmp_path / "out", formats=("png", "pdf"))["markdown"]
    assert (tmp_path / "out" / "side_info.md").read_text() == md
    assert (tmp_path / "out" / "side_info_recall.pdf").read_bytes()[:4] == b"%PDF"
    lines = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]] for ln in md.splitlines()
             if ln.startswith("| ")}
    assert lines["arm"] == ["informative u5", "noise u5"]  # informative first
    assert lines["LightGCN"] == ["0.2000 ± 0.0000 (2)", "0.2000 ± 0.0000 (2)"]
    assert lines["SLIF-MR w/o KG"][0] == "0.2190 ± 0.0000 (2)"
    assert lines["vs LightGCN"] == ["+10.00%", "-5.00%"]
    assert lines["vs w/o KG"] == [f"{(0.22 - 0.219) / 0.219 * 100:+.2f}%", f"{(0.19 - 0.18) / 0.18 * 100:+.2f}%"]
    assert "informative u5: SLIF-MR vs LightGCN +10.00% (target >= +5%): met" in md
    assert "noise u5: SLIF-MR vs LightGCN -5.00% (target within ±1%, or better): NOT met" in md
    assert "informative u5: removing KG costs +0.46% (target >= 1%): NOT met" in md
    assert lines["valid Recall@20, kg view alone"] == ["0.100", "0.100"]
    assert lines["fusion weight, kg"] == ["0.20 (0.05)", "0.20 (0.05)"]
    assert lines["valid Recall@20, LightGCN"] == ["0.250", "0.250"]
    # first refresh 0.1 in both seeds; last 0.3 and 0.4 -> 0.35
    assert lines["share of G in A, first / last refresh"] == ["0.10 / 0.35", "0.10 / 0.35"]


def test_side_info_report_rejects_other_datasets(tmp_path):
    record(tmp_path, "lightgcn", "ml-100k-kg", 1, 0.2)
    with pytest.raises(ReportError, match="side-information family"):
        report([tmp_path])


def test_build_docs_fills_a_side_info_section(tmp_path):
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("build_docs", root / "scripts" / "build_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sweeps, docs = tmp_path / "sweeps", tmp_path / "docs"
    for arm, m in (("lightgcn", 0.2), ("slifmr", 0.21)):
        record(sweeps / "side_info", arm, "synth-u10-noise", 1, m)
    docs.mkdir()
    page = docs / "studies.md"
    other = "<!-- report:table2 -->\nkept as it is\n<!-- /report:table2 -->\n"
    page.write_text("<!-- report:side_info kind=side_info -->\nold\n<!-- /report:side_info -->\n" + other)
    assert mod.build(sweeps, docs, only=["side_info"]) == [page]
    assert page.read_text().endswith(other)  # --only: another study's section is left alone
    text = page.read_text()
    assert "python -m slifmr.report.side_info" in text and "| vs LightGCN | +5.00% |" in text
    assert (docs / "studies" / "side_info" / "side_info.md").exists()


def test_side_info_figure_draws_each_arms_means(tmp_path, monkeypatch):
    """A panel per kind of side information, x = interactions per user, y = the cells' means."""
    from slifmr.report import plots
    from slifmr.report.records import load_records
    from slifmr.report.side_info import side_info_plot

    for (arm, ds), m in {("lightgcn", "synth-u5-informative"): 0.20, ("lightgcn", "synth-u10-informative"): 0.30,
                         ("slifmr", "synth-u5-informative"): 0.22, ("slifmr", "synth-u5-noise"): 0.19}.items():
        for seed in (1, 2):
            record(tmp_path, arm, ds, seed, m)
    seen = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path, formats: seen.update(fig=fig, path=path) or path)
    side_info_plot(load_records([tmp_path]), tmp_path / "out")
    axes = seen["fig"].axes
    assert [ax.get_title() for ax in axes] == ["informative side information", "noise side information"]
    lines = [{c.get_label(): (list(c.lines[0].get_xdata()), list(c.lines[0].get_ydata())) for c in ax.containers}
             for ax in axes]  # each errorbar's data line, by its legend label
    assert lines[0]["LightGCN"][0] == [5, 10] and lines[0]["LightGCN"][1] == pytest.approx([0.20, 0.30])
    assert lines[0]["SLIF-MR"][1] == pytest.approx([0.22]) and lines[1]["SLIF-MR"][1] == pytest.approx([0.19])
    assert "LightGCN" not in lines[1] and seen["path"].name == "side_info_recall.png"

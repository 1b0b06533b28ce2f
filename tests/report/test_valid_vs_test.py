"""slifmr.report.valid_vs_test: the tuned-vs-default pairs, three changes each, and the agreement
counts, on a hand-made versus CSV and search summaries whose answers are worked out below; and
build_docs filling a ``kind=valid_vs_test`` section from them."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from slifmr.report.valid_vs_test import (ValidVsTestError, agreement, kept_defaults, markdown, read_pairs,
                                         search_change)

ROOT = Path(__file__).resolve().parents[2]
FIELDS = ["model", "dataset", "variant", "metric", "default_mean", "default_std", "default_n", "variant_mean",
          "variant_std", "variant_n", "change_pct", "test", "p_value", "n_users", "monitor", "default_valid",
          "variant_valid"]


def _row(model: str, metric: str, dm: float, tm: float, change: float, dv: float, tv: float, p: float = 0.5) -> dict:
    return {"model": model, "dataset": "d1", "variant": "tuned=dir", "metric": metric, "default_mean": dm,
            "default_std": 0.0, "default_n": 3, "variant_mean": tm, "variant_std": 0.0, "variant_n": 5,
            "change_pct": change, "test": "Wilcoxon signed-rank", "p_value": p, "n_users": 100,
            "monitor": "val/recall@20", "default_valid": dv, "variant_valid": tv}


def _csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    return path


def _search(root: Path, model: str, default_value: float, best_value: float, kept: bool = False) -> None:
    d = root / "d1" / model
    d.mkdir(parents=True)
    default = {"model.lr": 0.01}
    (d / "summary.json").write_text(json.dumps({
        "model": model, "dataset": "d1", "trials": 12, "completed": 8, "pruned": 4,
        "best": {"trial": 0 if kept else 3, "value": best_value, "params": default if kept else {"model.lr": 0.001}},
        "default": {"trial": 0, "value": default_value, "params": default}}))


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    # mf:   valid 0.20 -> 0.22 = +10 %, test +5 %, search 0.25 -> 0.30 = +20 %: all agree; gap |10 - 5| = 5
    # kgat: valid 0.40 -> 0.396 = -1 % (not beyond 1 %), test -3 %, search 0.50 -> 0.51 = +2 %:
    #       valid agrees (both negative), the search does not; gap |-1 - -3| = 2
    # pop:  the same runs on both sides: left out.  ngcf: no search summary (search change None),
    #       valid +0.5 %, test +0.5 %: neither beyond 1 %, so not checked.  ndcg rows: another metric.
    # lightgcn: the search kept the defaults (change 0 by construction): left out of the search's
    #       count, though its test change (-2 %) is clear; valid -0.5 % agrees with it; gap 1.5
    versus = _csv(tmp_path / "versus_default.csv", [
        _row("kgat", "recall@20", 0.30, 0.291, -3.0, 0.40, 0.396, p=0.004),
        _row("mf", "recall@20", 0.20, 0.21, 5.0, 0.20, 0.22, p=1e-5),
        _row("mf", "ndcg@20", 0.10, 0.05, -50.0, 0.20, 0.22),
        _row("pop", "recall@20", 0.15, 0.15, 0.0, 0.14, 0.14, p=1.0),
        _row("ngcf", "recall@20", 0.20, 0.201, 0.5, 0.20, 0.201),
        _row("lightgcn", "recall@20", 0.30, 0.294, -2.0, 0.30, 0.2985),
    ])
    tune = tmp_path / "tuning"
    _search(tune, "mf", 0.25, 0.30)
    _search(tune, "kgat", 0.50, 0.51)
    _search(tune, "lightgcn", 0.40, 0.40, kept=True)
    return versus, tune


def test_pairs_three_changes_each(data):
    versus, tune = data
    pairs = read_pairs([versus], tune)
    assert [q.model for q in pairs] == ["mf", "lightgcn", "ngcf", "kgat"]  # Table II's order; Pop, ndcg out
    mf, lightgcn, ngcf, kgat = pairs
    assert lightgcn.kept and lightgcn.search == 0.0 and not (mf.kept or kgat.kept or ngcf.kept)
    assert mf.search == pytest.approx(20.0) and mf.valid == pytest.approx(10.0) and mf.test == 5.0
    assert kgat.search == pytest.approx(2.0) and kgat.valid == pytest.approx(-1.0) and kgat.test == -3.0
    assert ngcf.search is None and mf.seeds == "3 / 5"


def test_agreement_counts_only_clear_pairs_and_the_largest_gap(data):
    pairs = read_pairs([data[0]], data[1])
    valid = agreement(pairs, "valid")
    assert (valid.agree, valid.checked, valid.disagree) == (3, 3, [])
    assert valid.largest_gap == pytest.approx(5.0) and valid.largest_gap_pair.model == "mf"
    search = agreement(pairs, "search")
    assert (search.agree, search.checked) == (1, 2) and [q.model for q in search.disagree] == ["kgat"]  # lightgcn out
    assert search.largest_gap == pytest.approx(15.0)
    stricter = agreement(pairs, "valid", threshold=4.0)  # only mf is clear at 4 %
    assert (stricter.agree, stricter.checked) == (1, 1)
    text = markdown(pairs)
    assert "| MF-BPR, d1 | 3 / 5 | +20.0 % | +10.0 % | +5.0 % | 1.0e-05 |" in text
    assert "same sign as test in **3 of 3**" in text and "**1 of 2**" in text and "(not: KGAT, d1)" in text
    assert "| LightGCN, d1 | 3 / 5 | defaults kept | -0.5 % | -2.0 % |" in text


def test_search_without_a_finished_defaults_trial():
    assert search_change({"best": {"value": 0.3}, "default": {"value": None}}) is None
    assert search_change({"best": {"value": 0.3}}) is None


def test_search_without_a_completed_trial():
    # every trial pruned: a defaults' value but no best; neither a change nor "defaults kept"
    s = {"best": None, "default": {"trial": 0, "value": 0.2, "params": {"model.lr": 0.01}}}
    assert search_change(s) is None and kept_defaults(s) is False


def test_bad_input_names_the_file_and_line(tmp_path, data):
    with pytest.raises(ValidVsTestError, match="no such versus CSV"):
        read_pairs([tmp_path / "missing.csv"], data[1])
    bad = _csv(tmp_path / "bad.csv", [_row("mf", "recall@20", 0.2, 0.21, 5.0, 0.2, 0.22),
                                      _row("kgat", "recall@20", 0.3, 0.29, -3.0, 0.4, 0.39)])
    bad.write_text(bad.read_text().replace("0.39\r\n", "n/a\r\n").replace("0.39\n", "n/a\n"))
    with pytest.raises(ValidVsTestError, match=r"bad\.csv, line 3"):
        read_pairs([bad], data[1])


def test_build_docs_fills_a_valid_vs_test_section(tmp_path, data):
    versus, tune = data
    repo = tmp_path / "repo"
    docs = repo / "docs"
    target = docs / "studies" / "st" / "summary" / "versus_default.csv"
    target.parent.mkdir(parents=True)
    target.write_text(versus.read_text())
    (repo / "docs" / "tuning").parent.mkdir(parents=True, exist_ok=True)
    tune.rename(repo / "docs" / "tuning")
    spec = importlib.util.spec_from_file_location("build_docs", ROOT / "scripts" / "build_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    page = docs / "page.md"
    page.write_text("a\n<!-- report:vt kind=valid_vs_test studies=st -->\nOLD\n<!-- /report:vt -->\nz\n")
    assert mod.build(tmp_path / "sweeps", docs) == [page]
    text = page.read_text()
    assert "OLD" not in text and "4 pairs" in text and "| KGAT, d1 | 3 / 5 | +2.0 % | -1.0 % | -3.0 % | 0.004 |" in text
    assert mod.build(tmp_path / "sweeps", docs) == []  # idempotent


def test_command_line_prints_the_table_and_names_a_missing_csv(tmp_path, data, capsys):
    from slifmr.report.valid_vs_test import main
    versus, tune = data
    assert main([str(versus), "--tune-root", str(tune)]) == 0
    assert "| KGAT, d1 | 3 / 5 | +2.0 % | -1.0 % | -3.0 % | 0.004 |" in capsys.readouterr().out
    assert main([str(tmp_path / "nope.csv"), "--tune-root", str(tune)]) == 2
    assert "nope.csv: no such versus CSV" in capsys.readouterr().err


def test_build_docs_names_the_page_of_a_marker_without_studies(tmp_path):
    spec = importlib.util.spec_from_file_location("build_docs", ROOT / "scripts" / "build_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    page.write_text("<!-- report:vt kind=valid_vs_test -->\n<!-- /report:vt -->\n")
    with pytest.raises(ValueError, match=r"page\.md: a kind=valid_vs_test marker needs studies="):
        mod.build(tmp_path / "sweeps", page.parent)

"""slifmr.report --latex / --holm, readable row names and '± std' only where a cell has n > 1."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from slifmr.report.cli import main, report
from slifmr.report.significance import holm
from slifmr.report.tables import tex_escape
from synthetic_records import make_record

N_USERS = 30


def _values(rng: np.random.Generator, level: float) -> dict[str, np.ndarray]:
    r = np.clip(level + 0.1 * rng.standard_normal(N_USERS), 0, 1)
    return {"recall@20": r, "ndcg@20": r * 0.6}


def test_holm_hand_computed():
    # sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> held at 0.06)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    # NaN is no test: stays NaN and m = 2
    out = holm([math.nan, 0.02, 0.5])
    assert math.isnan(out[0]) and out[1:] == pytest.approx([0.04, 0.5], abs=1e-15)
    assert holm([0.6, 0.7]) == [1.0, 1.0]  # capped at 1, monotone
    assert holm([]) == []


def _body_rows(tex: str) -> list[str]:
    """The model rows: between the header's \\midrule and the next rule."""
    lines = tex.strip().splitlines()
    start = lines.index(r"\midrule") + 1
    end = next(i for i in range(start, len(lines)) if lines[i] in (r"\midrule", r"\bottomrule"))
    return lines[start:end]


def test_latex_table_and_holm(tmp_path):
    rng = np.random.default_rng(0)
    for model, level in (("mf", 0.20), ("lightgcn", 0.30), ("slifmr", 0.33)):
        for seed in (1, 2):
            make_record(tmp_path / "runs", model, seed, _values(rng, level))
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--plot", "none",
                 "--latex", "--holm"]) == 0
    tex = (tmp_path / "out" / "results.tex").read_text()
    lines = tex.strip().splitlines()
    assert lines[0].startswith(r"\begin{tabular}{lcc}") and lines[1] == r"\toprule"
    assert lines[-2:] == [r"\bottomrule", r"\end{tabular}"] and tex.count(r"\midrule") == 2
    body = _body_rows(tex)
    assert [b.split(" & ")[0] for b in body] == ["MF-BPR", "LightGCN", "SLIF-MR"]  # one row per model
    rows = {r["label"]: r for r in csv.DictReader(open(tmp_path / "out" / "results.csv"))}
    for j, m in enumerate(("recall@20", "ndcg@20")):
        best = max(rows, key=lambda k: float(rows[k][f"toy/{m}/mean"]))
        for b in body:
            cell = b.rstrip(" \\").split(" & ")[1 + j]
            assert cell.startswith(r"\textbf{") == (b.split(" & ")[0] == best)
            assert r"$\pm$" in cell  # two seeds: std shown
    # Holm over the report's two tests, in comparisons.csv, the Markdown and the LaTeX
    comps = list(csv.DictReader(open(tmp_path / "out" / "comparisons.csv")))
    expected = holm([float(c["p_value"]) for c in comps])
    assert [float(c["p_holm"]) for c in comps] == pytest.approx(expected, rel=1e-12)
    assert all(float(c["p_holm"]) >= float(c["p_value"]) for c in comps)
    assert "p (Holm)" in tex and "| p (Holm) |" in (tmp_path / "out" / "results.md").read_text()
    # without the flags: no .tex, no Holm row
    res = report([tmp_path / "runs"], tmp_path / "plain", metrics=["recall@20"], plot="none")
    assert not (tmp_path / "plain" / "results.tex").exists() and "Holm" not in res["markdown"]
    assert math.isnan(res["comparisons"][0].p_holm)


def test_readable_names_and_no_std_with_one_seed(tmp_path):
    rng = np.random.default_rng(1)
    for L in (1, 2):
        make_record(tmp_path / "runs", "slifmr", 1, _values(rng, 0.2 + 0.02 * L), extra=[f"model.L={L}",
                                                                                          "model.foo_bar=3"])
    res = report([tmp_path / "runs"], tmp_path / "out", metrics=["recall@20"], plot="none", latex=True)
    md = res["markdown"]
    assert "| SLIF-MR (GNN layers L = 1) |" in md and "±" not in md.split("\n\n")[0]
    assert "one run per cell (no std)" in md and "mean ± std" not in md
    tex = (tmp_path / "out" / "results.tex").read_text()
    assert r"\pm" not in tex and "SLIF-MR (GNN layers L = 2)" in tex
    # CSV keeps the config keys (for other tools)
    labels = [r["label"] for r in csv.DictReader(open(tmp_path / "out" / "results.csv"))]
    assert "SLIF-MR (model.L=1)" in labels


def test_tex_escape():
    assert tex_escape("a_b & 5% #1 β") == r"a\_b \& 5\% \#1 $\beta$"

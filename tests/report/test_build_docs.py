"""scripts/build_docs.py fills the marked doc sections from records, and only those."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from synthetic_records import make_record

ROOT = Path(__file__).resolve().parents[2]


def _build_docs():
    spec = importlib.util.spec_from_file_location("build_docs", ROOT / "scripts" / "build_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sections_filled_from_records(tmp_path):
    sweeps, docs = tmp_path / "sweeps", tmp_path / "docs"
    rng = np.random.default_rng(1)
    for seed in (1, 2):
        make_record(sweeps / "table2", "lightgcn", seed, {"recall@20": rng.random(20), "ndcg@20": rng.random(20)})
        make_record(sweeps / "table2", "slifmr", seed, {"recall@20": rng.random(20), "ndcg@20": rng.random(20)})
    docs.mkdir()
    page = docs / "page.md"
    page.write_text("intro\n<!-- report:table2 metrics=recall@20 -->\nOLD-TEXT\n<!-- /report:table2 -->\n"
                    "<!-- report:table9 -->\npublished\n<!-- /report:table9 -->\n"
                    "<!-- report:table8 -->\n<!-- /report:table8 -->\nend\n")
    kept: list[str] = []
    changed = _build_docs().build(sweeps, docs, kept=kept)
    text = page.read_text()
    assert changed == [page]
    assert "OLD-TEXT" not in text and "| LightGCN |" in text and "SLIF-MR" in text
    # no records for table9: its published text stays, and the caller is told; table8 was empty
    assert "<!-- report:table9 -->\npublished\n<!-- /report:table9 -->" in text and kept == ["table9"]
    assert f"<!-- report:table8 -->\n(no records under {(sweeps / 'table8').as_posix()} yet)\n" in text
    assert text.startswith("intro\n") and text.endswith("end\n")
    assert (docs / "studies" / "table2" / "results.md").exists()
    # idempotent: a second build changes nothing
    assert _build_docs().build(sweeps, docs) == []


def test_a_study_is_read_from_the_first_root_that_holds_its_records(tmp_path):
    """A checkout without the runs (outputs/ empty) rebuilds from the records kept in the
    repository; where both hold them, this checkout's runs win."""
    runs, kept_root, docs = tmp_path / "outputs", tmp_path / "records", tmp_path / "docs"
    rng = np.random.default_rng(2)
    for seed in (1, 2):
        make_record(kept_root / "table2", "mf", seed, {"recall@20": rng.random(20)})
    docs.mkdir()
    page = docs / "page.md"
    page.write_text("<!-- report:table2 metrics=recall@20 -->\nold\n<!-- /report:table2 -->\n")
    build = _build_docs().build
    assert build([runs, kept_root], docs) == [page]
    assert "| MF-BPR | 2 |" in page.read_text() and f"slifmr.report {(kept_root / 'table2').as_posix()}" in page.read_text()
    make_record(runs / "table2", "lightgcn", 1, {"recall@20": rng.random(20)})
    assert build([runs, kept_root], docs) == [page]
    assert "| LightGCN | 1 |" in page.read_text() and "MF-BPR" not in page.read_text()


def test_a_fixed_baseline_option_compares_with_that_row(tmp_path):
    """``baseline=lightgcn`` compares ours with LightGCN even when another baseline is better."""
    sweeps, docs = tmp_path / "sweeps", tmp_path / "docs"
    rng = np.random.default_rng(2)
    for seed in (1, 2):
        make_record(sweeps / "table2", "lightgcn", seed, {"recall@20": 0.2 + 0.1 * rng.random(30)})
        make_record(sweeps / "table2", "mf", seed, {"recall@20": 0.8 + 0.1 * rng.random(30)})
        make_record(sweeps / "table2", "slifmr", seed, {"recall@20": 0.4 + 0.1 * rng.random(30)})
    docs.mkdir()
    page = docs / "page.md"
    page.write_text("<!-- report:table2 metrics=recall@20 -->\n<!-- /report:table2 -->\n"
                    "<!-- report:table2 metrics=recall@20 baseline=lightgcn -->\n<!-- /report:table2 -->\n")
    _build_docs().build(sweeps, docs)
    best, fixed = page.read_text().split("<!-- /report:table2 -->")[:2]
    imp = [line for line in best.splitlines() if line.startswith("| %Imp")][0]
    assert "-" in imp.split("|")[3]  # ours (~0.45) below the best baseline, MF (~0.85)
    imp = [line for line in fixed.splitlines() if line.startswith("| %Imp")][0]
    assert "+" in imp.split("|")[3]  # ... and above LightGCN (~0.25)
    assert "--baseline lightgcn" in fixed and "baseline (fixed)" in fixed
    assert (docs / "studies" / "table2" / "vs_lightgcn" / "results.md").exists()


def _sweep(root: Path, key: str, values, seeds=(1, 2)) -> None:
    rng = np.random.default_rng(7)
    for v in values:
        for seed in seeds:
            make_record(root, "slifmr", seed, {"recall@20": rng.random(30), "ndcg@20": rng.random(30)},
                        extra=[f"{key}={v}"])


def test_build_docs_from_csv_replots_figures_and_keeps_the_text(tmp_path):
    from slifmr.report.cli import report

    _sweep(tmp_path / "sweep", "consistency.beta", ("0.1", "0.9"))
    docs = tmp_path / "docs"
    study = docs / "studies" / "fig6_beta"
    report([tmp_path / "sweep"], study, plot="none")  # the committed table; the records then "gone"
    (study / "sensitivity_consistency.beta.png").write_bytes(b"old figure, old key spelling")
    page = docs / "studies.md"
    page.write_text("intro\n<!-- report:fig6_beta x=model.consistency.beta plot=sensitivity metrics=recall@20 -->\nTABLE TEXT\n\n"
                    "![fig6_beta: sensitivity_consistency.beta](studies/fig6_beta/sensitivity_consistency.beta.png)\n"
                    "<!-- /report:fig6_beta -->\n<!-- report:fig5 -->\nFIG5 TEXT\n<!-- /report:fig5 -->\nend\n")
    build = _build_docs().build
    assert build(tmp_path / "no-sweeps", docs, from_csv=True) == [page]
    text = page.read_text()
    fig = "studies/fig6_beta/sensitivity_model.consistency.beta"
    assert f"![fig6_beta: sensitivity_model.consistency.beta]({fig}.png) ([PDF]({fig}.pdf))" in text
    assert "TABLE TEXT" in text and "sensitivity_consistency.beta.png" not in text
    assert "Figures re-plotted from `docs/studies/fig6_beta/results.csv`" in text
    assert "FIG5 TEXT" in text  # no figure for it: left exactly as it was
    assert (docs / f"{fig}.png").read_bytes()[:4] == b"\x89PNG" and (docs / f"{fig}.pdf").read_bytes()[:4] == b"%PDF"
    assert not (study / "sensitivity_consistency.beta.png").exists()
    assert build(tmp_path / "no-sweeps", docs, from_csv=True) == []  # idempotent

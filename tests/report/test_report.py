"""slifmr.report on synthetic records with known per-user values: mean ± std, %Imp, p-values,
files written; plots detected from the sweep; errors that name the directory."""

from __future__ import annotations

import csv
import math
import statistics

import numpy as np
import pytest

from slifmr.report import ReportError, load_records
from slifmr.report.cli import main, report
from slifmr.report.significance import paired_t_test
from synthetic_records import make_record

N_USERS = 30


def _values(rng: np.random.Generator, level: float) -> dict[str, np.ndarray]:
    r = np.clip(level + 0.1 * rng.standard_normal(N_USERS), 0, 1)
    return {"recall@20": r, "ndcg@20": r * 0.6}


@pytest.fixture
def toy(tmp_path):
    """mf (weak), lightgcn (best baseline), slifmr; two seeds each, one dataset."""
    rng = np.random.default_rng(0)
    per_user = {}
    for model, level in (("mf", 0.20), ("lightgcn", 0.30), ("slifmr", 0.33)):
        for seed in (1, 2):
            per_user[(model, seed)] = _values(rng, level)
            make_record(tmp_path / "runs", model, seed, per_user[(model, seed)])
    return tmp_path, per_user


def _png_ok(path) -> None:
    import matplotlib.image as mpimg

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    img = mpimg.imread(path)
    assert img.shape[0] > 100 and img.shape[1] > 100


def test_table_mean_std_imp_and_p(toy):
    tmp, pu = toy
    res = report([tmp / "runs"], tmp / "out", metrics=["recall@20", "ndcg@20"], plot="none")
    rows = {r["model"]: r for r in csv.DictReader(open(tmp / "out" / "results.csv"))}
    for model in ("mf", "lightgcn", "slifmr"):
        for m in ("recall@20", "ndcg@20"):
            vals = [float(np.mean(pu[(model, s)][m])) for s in (1, 2)]
            assert float(rows[model][f"toy/{m}/mean"]) == pytest.approx(statistics.mean(vals), abs=1e-12)
            assert float(rows[model][f"toy/{m}/std"]) == pytest.approx(statistics.stdev(vals), abs=1e-12)
            assert rows[model][f"toy/{m}/n"] == "2"
    comps = {c.metric: c for c in res["comparisons"]}
    scipy_stats = pytest.importorskip("scipy.stats")
    for m in ("recall@20", "ndcg@20"):
        c = comps[m]
        ours = statistics.mean(float(np.mean(pu[("slifmr", s)][m])) for s in (1, 2))
        base = statistics.mean(float(np.mean(pu[("lightgcn", s)][m])) for s in (1, 2))
        assert c.baseline.model == "lightgcn"  # the best baseline, not mf
        assert c.imp_pct == pytest.approx((ours - base) / base * 100, rel=1e-12)
        pooled_s = (pu[("slifmr", 1)][m] + pu[("slifmr", 2)][m]) / 2  # per-user mean over seeds
        pooled_l = (pu[("lightgcn", 1)][m] + pu[("lightgcn", 2)][m]) / 2
        expected = scipy_stats.wilcoxon(pooled_s, pooled_l).pvalue
        assert c.test == "Wilcoxon signed-rank" and c.n_users == N_USERS
        assert c.p_value == pytest.approx(expected, rel=1e-12)
    md = (tmp / "out" / "results.md").read_text()
    assert "%Imp" in md and f"{comps['recall@20'].imp_pct:+.2f}%" in md and "Wilcoxon" in md
    assert (tmp / "out" / "comparisons.csv").exists()


def test_direct_t_test_matches_scipy(toy):
    tmp, pu = toy
    scipy_stats = pytest.importorskip("scipy.stats")
    res = report([tmp / "runs"], tmp / "out", metrics=["recall@20"], test="ttest", plot="none")
    c = res["comparisons"][0]
    a = (pu[("slifmr", 1)]["recall@20"] + pu[("slifmr", 2)]["recall@20"]) / 2
    b = (pu[("lightgcn", 1)]["recall@20"] + pu[("lightgcn", 2)]["recall@20"]) / 2
    assert c.test == "paired t-test"
    assert c.p_value == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue, rel=1e-9)
    rng = np.random.default_rng(1)
    for _ in range(20):
        x, y = rng.standard_normal(12), rng.standard_normal(12) + 0.3
        assert paired_t_test(x, y)[1] == pytest.approx(scipy_stats.ttest_rel(x, y).pvalue, rel=1e-9)
    assert paired_t_test(np.ones(5), np.ones(5))[1] == 1.0 and paired_t_test(np.ones(5) + 1, np.ones(5))[1] == 0.0


def test_without_scipy_the_t_test_is_used(toy, monkeypatch):
    import slifmr.report.significance as sig

    tmp, _ = toy
    monkeypatch.setattr(sig, "have_scipy", lambda: False)
    res = report([tmp / "runs"], tmp / "out", metrics=["recall@20"], plot="none")
    assert res["comparisons"][0].test == "paired t-test" and "paired t-test" in res["markdown"]


def test_sensitivity_plot_and_cli(tmp_path, capsys):
    rng = np.random.default_rng(2)
    for L in (1, 2, 3):
        for seed in (1, 2):
            for ds in ("toy", "toy2"):
                make_record(tmp_path / "runs", "slifmr", seed, _values(rng, 0.2 + 0.02 * L), dataset=ds,
                            extra=[f"model.L={L}"])
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    _png_ok(tmp_path / "out" / "sensitivity_model.L.png")
    out = capsys.readouterr().out
    assert "SLIF-MR (GNN layers L = 1)" in out and "No %Imp" in out  # readable key names
    # paper formats, 300 dpi
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "pub"), "--format", "pdf,svg,png"]) == 0
    pub = {f: tmp_path / "pub" / f"sensitivity_model.L.{f}" for f in ("pdf", "svg", "png")}
    assert pub["pdf"].read_bytes()[:5] == b"%PDF-" and b"<svg" in pub["svg"].read_bytes()[:2000]
    from PIL import Image

    with Image.open(pub["png"]) as im:
        assert round(im.info["dpi"][0]) == 300
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "bad"), "--format", "gif"]) == 2
    assert "gif" in capsys.readouterr().err


def test_robustness_and_interval_plots(tmp_path):
    rng = np.random.default_rng(3)
    for model in ("lightgcn", "slifmr"):
        for kind in ("interaction", "kg"):
            for ratio in (0.0, 0.1, 0.2):
                for seed in (1, 2):
                    make_record(tmp_path / "noise", model, seed, _values(rng, 0.3 - ratio / 2),
                                extra=[f"noise.{kind}={ratio}"])
    for interval in (1, 5, 10):
        for seed in (1, 2):
            make_record(tmp_path / "interval", "slifmr", seed, _values(rng, 0.3 - interval / 100),
                        extra=[f"model.self_loop.interval={interval}"], time_fit=100.0 / interval + seed)
    res = report([tmp_path / "noise"], tmp_path / "out_noise")
    assert [p.name for p in res["files"] if p.suffix == ".png"] == ["robustness.png"]
    _png_ok(tmp_path / "out_noise" / "robustness.png")
    res = report([tmp_path / "interval"], tmp_path / "out_interval")
    _png_ok(tmp_path / "out_interval" / "interval_tradeoff.png")
    rows = list(csv.DictReader(open(tmp_path / "out_interval" / "interval.csv")))
    assert [int(r["interval"]) for r in rows] == [1, 5, 10]
    assert float(rows[1]["fit_s_mean"]) == pytest.approx(20.0 + 1.5)


def test_no_records_names_the_directory(tmp_path, capsys):
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    with pytest.raises(ReportError, match="nothing_here"):
        load_records([empty])
    assert main([str(empty)]) == 2
    assert "no result records" in capsys.readouterr().err
    assert math.isnan(paired_t_test(np.ones(1), np.zeros(1))[1])


def test_a_seed_counted_twice_is_flagged(toy):
    tmp, pu = toy
    assert "Warning" not in report([tmp / "runs"], tmp / "out", plot="none")["markdown"]
    make_record(tmp / "copy", "mf", 1, pu[("mf", 1)])  # the same job again, elsewhere
    md = report([tmp / "runs", tmp / "copy"], tmp / "out2", plot="none")["markdown"]
    assert "Warning" in md and "MF-BPR on toy: seeds [1, 1, 2]" in md


def test_merge_keeps_capped_runs_in_one_row(tmp_path):
    """A key given to some runs only splits rows, unless it is merged; the table then says so."""
    rng = np.random.default_rng(0)
    vals = {m: rng.random(30) for m in ("recall@20", "ndcg@20")}
    make_record(tmp_path, "kgin", 1, vals, extra=["model.cap=40"])
    make_record(tmp_path, "kgin", 2, {m: v * 0.5 for m, v in vals.items()})
    split = report([tmp_path], tmp_path / "r1", metrics=["recall@20"], plot="none")
    assert len(split["table"].rows) == 2
    merged = report([tmp_path], tmp_path / "r2", metrics=["recall@20"], plot="none", merge=["model.cap"])
    assert len(merged["table"].rows) == 1
    cell = merged["table"].get(merged["table"].rows[0], "toy", "recall@20")
    assert cell.n == 2 and abs(cell.mean - 0.75 * vals["recall@20"].mean()) < 1e-12
    assert "model.cap=40" in merged["markdown"]


def test_how_a_job_was_scheduled_makes_no_variant(tmp_path):
    """A killed grid re-run with ``skip_completed=true`` gives its new runs that override: they
    must pool with the runs of the first pass, not form a row of their own."""
    rng = np.random.default_rng(1)
    vals = {m: rng.random(30) for m in ("recall@20", "ndcg@20")}
    make_record(tmp_path, "mf", 1, vals)
    make_record(tmp_path, "mf", 2, {m: v * 0.5 for m, v in vals.items()}, extra=["skip_completed=true"])
    res = report([tmp_path], tmp_path / "r", metrics=["recall@20"], plot="none")
    assert len(res["table"].rows) == 1
    assert res["table"].get(res["table"].rows[0], "toy", "recall@20").n == 2
    assert "skip_completed" not in res["markdown"]


def test_variants_in_numeric_order_and_no_empty_imp_rows(tmp_path):
    """A sweep of one model: rows follow the swept value as numbers, and without a baseline
    there are no empty %Imp / p rows."""
    rng = np.random.default_rng(2)
    for g in ("0.1", "1e-05", "0.001"):
        make_record(tmp_path, "slifmr", 1, {"recall@20": rng.random(10), "ndcg@20": rng.random(10)},
                    extra=[f"model.consistency.gamma={g}"])
    res = report([tmp_path], tmp_path / "r", metrics=["recall@20"], plot="none")
    assert [r.variant for r in res["table"].rows] == [
        "model.consistency.gamma=1e-05", "model.consistency.gamma=0.001", "model.consistency.gamma=0.1"]
    assert "%Imp" not in res["markdown"].split("\n\n")[0]


def test_noise_levels_compare_like_with_like(tmp_path):
    """Fig. 7: SLIF-MR at a noise level is compared with the baseline at the same level."""
    n = 40
    vals = {("lightgcn", "0.0"): 0.50, ("lightgcn", "0.2"): 0.30, ("slifmr", "0.0"): 0.45, ("slifmr", "0.2"): 0.33}
    for (model, level), v in vals.items():
        make_record(tmp_path, model, 1, {"recall@20": np.full(n, v), "ndcg@20": np.full(n, v)},
                    extra=[f"noise.interaction={level}"])
    res = report([tmp_path], tmp_path / "r", metrics=["recall@20"], plot="none", test="ttest")
    imps = {c.ours.variant: (c.baseline.variant, c.imp_pct) for c in res["comparisons"]}
    assert imps["noise.interaction=0.0"][0] == "noise.interaction=0.0"
    assert imps["noise.interaction=0.2"] == ("noise.interaction=0.2", pytest.approx((0.33 - 0.30) / 0.30 * 100))


def test_ablations_compare_with_the_full_model_as_a_fixed_baseline(tmp_path):
    """Table III: every row is ours (model slifmr, one per ablation); ``--baseline`` naming the full
    model's row compares each other variant with it (%Imp and the paired test), and not itself."""
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    pu = {}
    for ab, level in (("full", 0.30), ("wo_kg", 0.28), ("wo_cl", 0.31)):
        for seed in (1, 2):
            pu[(ab, seed)] = _values(rng, level)
            make_record(tmp_path / "runs", "slifmr", seed, pu[(ab, seed)], extra=[f"ablation={ab}"])
    res = report([tmp_path / "runs"], tmp_path / "out", metrics=["recall@20"], plot="none",
                 baseline="SLIF-MR (ablation=full)")
    again = report([tmp_path / "runs"], tmp_path / "out2", metrics=["recall@20"], plot="none",
                   baseline="ablation=full")  # the variant alone names the same row
    assert [(c.ours, c.baseline, c.p_value) for c in again["comparisons"]] == \
        [(c.ours, c.baseline, c.p_value) for c in res["comparisons"]]
    comps = {c.ours.variant: c for c in res["comparisons"]}
    assert set(comps) == {"ablation=wo_kg", "ablation=wo_cl"}  # the full model is not compared with itself
    for ab in ("wo_kg", "wo_cl"):
        c = comps[f"ablation={ab}"]
        assert c.baseline.variant == "ablation=full"
        ours = statistics.mean(float(np.mean(pu[(ab, s)]["recall@20"])) for s in (1, 2))
        full = statistics.mean(float(np.mean(pu[("full", s)]["recall@20"])) for s in (1, 2))
        assert c.imp_pct == pytest.approx((ours - full) / full * 100, rel=1e-12)
        want = scipy_stats.wilcoxon((pu[(ab, 1)]["recall@20"] + pu[(ab, 2)]["recall@20"]) / 2,
                                    (pu[("full", 1)]["recall@20"] + pu[("full", 2)]["recall@20"]) / 2).pvalue
        assert c.p_value == pytest.approx(want, rel=1e-12)


def test_a_study_may_gather_runs_by_symlink(tmp_path):
    """Tuned and default runs kept in two places are read side by side through symlinked
    directories; a link cycle or a second link to the same runs reads nothing twice."""
    from synthetic_records import make_record

    rng = np.random.default_rng(0)
    make_record(tmp_path / "a", "lightgcn", 1, {"recall@20": rng.random(5)})
    make_record(tmp_path / "b", "slifmr", 1, {"recall@20": rng.random(5)})
    study = tmp_path / "study"
    study.mkdir()
    (study / "default").symlink_to(tmp_path / "a", target_is_directory=True)
    (study / "tuned").symlink_to(tmp_path / "b", target_is_directory=True)
    (study / "again").symlink_to(tmp_path / "b", target_is_directory=True)
    (study / "tuned_loop").symlink_to(study, target_is_directory=True)
    recs = load_records([study])
    assert sorted(r["model"] for r in recs) == ["lightgcn", "slifmr"]


def test_versus_default_compares_each_variant_with_its_own_default(tmp_path, capsys):
    """Per model: a variant row (here a tuned lr) against the model's default row (change, paired p on pooled per-user
    values); a model without a variant row (lightgcn) or without a default row (bm3) is not paired."""
    rng = np.random.default_rng(3)
    pu, valid = {}, {}
    for model, variant, level, seeds in (("mf", None, 0.20, (1, 2)), ("mf", "model.lr=0.01", 0.24, (1, 2, 3)),
                                         ("lightgcn", None, 0.30, (1, 2)), ("bm3", "model.lr=0.01", 0.28, (1, 2)),
                                         ("slifmr", None, 0.31, (1, 2)), ("slifmr", "model.lr=0.01", 0.30, (1, 2))):
        for seed in seeds:
            pu[(model, variant, seed)] = _values(rng, level)
            valid[(model, variant, seed)] = float(rng.random())
            make_record(tmp_path / "runs", model, seed, pu[(model, variant, seed)], extra=[variant] if variant else [],
                        val={"recall@20": valid[(model, variant, seed)], "ndcg@20": 0.5},
                        monitor="val/ndcg@20" if (model, variant) == ("slifmr", None) else "val/recall@20")
    res = report([tmp_path / "runs"], tmp_path / "out", metrics=["recall@20", "ndcg@20"], plot="none", versus=True)
    rows = list(csv.DictReader(open(tmp_path / "out" / "versus_default.csv")))
    assert sorted({(r["model"], r["variant"]) for r in rows}) == [("mf", "model.lr=0.01"), ("slifmr", "model.lr=0.01")]
    assert len(rows) == 4  # two models x two metrics
    scipy_stats = pytest.importorskip("scipy.stats")
    for r in rows:
        model, m = r["model"], r["metric"]
        tuned_seeds = (1, 2, 3) if model == "mf" else (1, 2)
        default = statistics.mean(float(np.mean(pu[(model, None, s)][m])) for s in (1, 2))
        tuned = statistics.mean(float(np.mean(pu[(model, "model.lr=0.01", s)][m])) for s in tuned_seeds)
        assert float(r["default_mean"]) == pytest.approx(default, abs=1e-12)
        assert float(r["variant_mean"]) == pytest.approx(tuned, abs=1e-12)
        assert float(r["change_pct"]) == pytest.approx((tuned - default) / default * 100, rel=1e-10)
        assert (int(r["default_n"]), int(r["variant_n"])) == (2, len(tuned_seeds))
        pooled_t = np.mean([pu[(model, "model.lr=0.01", s)][m] for s in tuned_seeds], axis=0)
        pooled_d = np.mean([pu[(model, None, s)][m] for s in (1, 2)], axis=0)
        assert float(r["p_value"]) == pytest.approx(scipy_stats.wilcoxon(pooled_t, pooled_d).pvalue, rel=1e-10)
        if model == "mf":  # the selection score, mean over each row's own seeds
            assert r["monitor"] == "val/recall@20"
            assert float(r["default_valid"]) == pytest.approx(statistics.mean(valid[(model, None, s)] for s in (1, 2)))
            assert float(r["variant_valid"]) == pytest.approx(
                statistics.mean(valid[(model, "model.lr=0.01", s)] for s in tuned_seeds))
        else:  # slifmr's default runs selected on another metric: no comparable validation score
            assert r["monitor"] == "" and math.isnan(float(r["default_valid"])) and math.isnan(float(r["variant_valid"]))
    mf_change = next(float(r["change_pct"]) for r in rows if r["model"] == "mf" and r["metric"] == "recall@20")
    md = res["markdown"]
    mf = next(r for r in rows if r["model"] == "mf")
    assert (f"| MF-BPR | toy | model.lr=0.01 | 2 / 3 | {float(mf['default_valid']):.4f} | "
            f"{float(mf['variant_valid']):.4f} |") in md and f"{mf_change:+.2f}%" in md
    assert "| SLIF-MR | toy | model.lr=0.01 | 2 / 2 |  |  |" in md and "valid Recall@20 default" in md
    assert (tmp_path / "out" / "results.md").read_text() == md
    # off by default; the CLI flag turns it on
    plain = report([tmp_path / "runs"], tmp_path / "plain", plot="none")
    assert "variant |" not in plain["markdown"] and not (tmp_path / "plain" / "versus_default.csv").exists()
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "cli"), "--plot", "none", "--versus-default"]) == 0
    assert (tmp_path / "cli" / "versus_default.csv").read_text() == (tmp_path / "out" / "versus_default.csv").read_text()


def test_identical_rows_pooled_over_different_seed_counts_are_not_different():
    """Pop's per-user values are the same in every seed; pooled over 3 seeds and over 5 they differ
    only by float rounding, which a signed-rank test used to count (p = 3e-5 for identical rows)."""
    from slifmr.report.significance import paired_test, pooled_per_user, wilcoxon

    rng = np.random.default_rng(0)
    v = rng.random(2000) / 7  # values whose sums round
    three = [{"_per_user": {"user": np.arange(2000), "recall@20": v}}] * 3  # records with their values loaded
    five = [{"_per_user": {"user": np.arange(2000), "recall@20": v}}] * 5
    a, b = pooled_per_user(three, "recall@20"), pooled_per_user(five, "recall@20")
    x, y = np.array([a[u] for u in range(2000)]), np.array([b[u] for u in range(2000)])
    assert np.any(x != y) and np.allclose(x, y, rtol=1e-14)  # the rounding this test is about
    assert wilcoxon(x, y) == (0.0, 1.0)
    assert paired_test(x, y, "ttest")[1] == 1.0
    # a real difference, however small against the values, still counts
    assert paired_test(x + 1e-6, y, "wilcoxon")[1] < 1e-100


def test_variant_labels_for_people():
    """Tables for people name a tuned row by its set ('tuned=dir': the searches' own directory), and a
    swept key by its readable name; the CSVs keep the raw keys (Row.label)."""
    from slifmr.report.aggregate import Row, variant_label

    assert variant_label("tuned=dir") == "tuned"
    assert variant_label("tuned=cpu12") == "tuned: cpu12"
    assert variant_label("model.L=2 tuned=cpu12") == "GNN layers L = 2, tuned: cpu12"
    assert variant_label("tuned.path=x") == "tuned.path=x"  # only the set itself is renamed
    row = Row("freedom", "tuned=dir")
    assert (row.label, row.display) == ("FREEDOM (tuned=dir)", "FREEDOM (tuned)")

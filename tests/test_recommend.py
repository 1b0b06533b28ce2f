"""From a trained run to recommendations: ``load_run`` rebuilds the run as tested (the self-loop
graph included), ``recommend`` gives the lists the test metrics score, the CLI writes them."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from hydra_compose import make_cfg
from slifmr.train import train


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_data):
    """One trained LightGCN and one SLIF-MR run on the tiny dataset (2 epochs each)."""
    out = {}
    for model in ("lightgcn", "slifmr"):
        tmp = tmp_path_factory.mktemp(model)
        cfg = make_cfg(tmp, ["dataset=ml-100k-kg-tiny", f"paths.data_dir={shared_data}", f"model={model}",
                             f"paths.cache_dir={tmp / 'cache'}", "trainer.max_epochs=2",
                             "callbacks.progress_bar=null"])
        train(cfg)
        out[model] = tmp / "run"
    return out


def _record(run_dir):
    return json.loads((run_dir / "record.json").read_text())


@pytest.mark.parametrize("model", ["lightgcn", "slifmr"])
def test_load_run_reproduces_the_recorded_test_metrics(runs, model):
    from slifmr import load_run

    run = load_run(runs[model])
    again = run.evaluate("test")
    recorded = _record(runs[model])["test"]
    assert set(recorded) == {k.removeprefix("test/") for k in again}
    for k, v in recorded.items():
        assert again[f"test/{k}"] == pytest.approx(v, abs=1e-12), k


def test_the_self_loop_graph_is_the_tested_one(runs):
    """SLIF-MR's checkpoint carries the graph its epoch was validated with; without it the same
    weights rank differently, which is why load_run restores it."""
    from slifmr import load_run

    run = load_run(runs["slifmr"])
    assert run.graphs.item_graph is not None
    with_graph = run.recommend(k=20).items
    run.graphs.set_item_graph(None)
    without = run.recommend(k=20).items
    assert (with_graph != without).any()


def test_recommend_lists_score_the_recorded_recall(runs):
    """Recall@20 recomputed by brute force from the lists in ORIGINAL ids against the test split
    mapped to original ids: checks the id mapping and the masking of train + valid items."""
    from slifmr import load_run

    run = load_run(runs["lightgcn"])
    recs = run.recommend(k=20)  # every user
    d = run.data
    uid, iid = d.user_ids.astype(str), d.item_ids.astype(str)
    truth: dict[str, set[str]] = {}
    for u, i in d.test:
        truth.setdefault(uid[u], set()).add(iid[i])
    seen = {(uid[u], iid[i]) for u, i in np.concatenate([d.train, d.valid])}
    recalls = []
    for u, items in zip(recs.users, recs.items):
        assert not any((u, it) in seen for it in items)  # exclude_seen
        assert len(set(items)) == 20
        if u in truth:
            recalls.append(len(truth[u] & set(items)) / len(truth[u]))
    assert np.mean(recalls) == pytest.approx(_record(runs["lightgcn"])["test"]["recall@20"], abs=1e-12)
    # listed users, in the order asked for; unknown ids are named
    some = [str(u) for u in recs.users[[5, 2]]]
    sub = run.recommend(some, k=20)
    assert list(sub.users) == some and (sub.items == recs.items[[5, 2]]).all()
    with pytest.raises(KeyError, match="no-such-user"):
        run.recommend(["no-such-user"], k=5)


def test_cli_writes_the_same_lists(runs, tmp_path, capsys):
    from slifmr import load_run
    from slifmr.recommend import main

    run_dir = runs["slifmr"]
    expected = load_run(run_dir).recommend(k=10)
    assert main([str(run_dir), "-k", "10", "--out", str(tmp_path / "r.csv"), "--device", "cpu"]) == 0
    with open(tmp_path / "r.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 * len(expected)
    got = {}
    for r in rows:
        got.setdefault(r["user"], []).append((int(r["rank"]), r["item"]))
    for u, items in zip(expected.users, expected.items):
        assert [it for _, it in sorted(got[u])] == list(items)

    users = [str(u) for u in expected.users[:3]]
    assert main([str(run_dir), "-k", "10", "--users", *users, "--out", str(tmp_path / "r.jsonl")]) == 0
    lines = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [x["user"] for x in lines] == users
    assert [x["items"] for x in lines] == [list(i) for i in expected.items[:3]]
    assert all(x["scores"] == sorted(x["scores"], reverse=True) for x in lines)

    assert main([str(run_dir), "--users", "nobody", "--out", str(tmp_path / "x.csv")]) == 1
    assert "nobody" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()


def test_cli_parquet_needs_pyarrow(runs, tmp_path):
    from slifmr.recommend import main

    try:
        import pyarrow.parquet as pq
    except ImportError:
        with pytest.raises(SystemExit, match="pyarrow"):
            main([str(runs["lightgcn"]), "--out", str(tmp_path / "r.parquet")])
        return
    assert main([str(runs["lightgcn"]), "-k", "5", "--out", str(tmp_path / "r.parquet")]) == 0
    t = pq.read_table(tmp_path / "r.parquet")
    assert t.column_names == ["user", "rank", "item", "score"] and t.num_rows % 5 == 0

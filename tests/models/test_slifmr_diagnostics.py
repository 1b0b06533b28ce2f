"""What each view of SLIF-MR is worth: per-view validation Recall@20 (one view's item embedding
scored with the users), fusion weights per view, and the share of G in A per refresh, checked
against brute force and carried into the run record."""

from __future__ import annotations

import json

import hydra
import pytest
import pytorch_lightning as pl
import torch

from slifmr.train import train
from hydra_compose import make_cfg

SYNTH = ["dataset=synthetic", "dataset.per_user=10", "dataset.n_users=120", "dataset.n_items=60",
         "callbacks.progress_bar=null", "trainer.enable_progress_bar=false"]


def brute_recall20(users_emb, items_emb, train, valid) -> float:
    """Mean over users with a valid item of |top-20 (train masked) & valid| / |valid|."""
    scores = (users_emb @ items_emb.T).double()
    scores[train[:, 0], train[:, 1]] = float("-inf")
    out = []
    for u in sorted(set(valid[:, 0].tolist())):
        row = scores[u]
        order = sorted(range(len(row)), key=lambda i: (-float(row[i]), i))[:20]
        truth = set(valid[valid[:, 0] == u, 1].tolist())
        out.append(len(truth & set(order)) / len(truth))
    return sum(out) / len(out)


@pytest.mark.parametrize("extra, names", [([], ["interaction", "feature", "kg"]),
                                          (["model.use_kg=false"], ["interaction", "feature"]),
                                          (["model.use_kg=false", "model.use_mm=false"], [])])
def test_per_view_recall_and_fusion_weights_match_brute_force(tmp_path, extra, names):
    cfg = make_cfg(tmp_path, SYNTH + extra)
    dm = hydra.utils.instantiate(cfg.dataset, _convert_="all")
    dm.setup("fit")
    model = hydra.utils.instantiate(cfg.model, meta=dm.meta, _convert_="all")
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False)
    logged = trainer.validate(model, datamodule=dm, verbose=False)[0]
    model.eval()
    with torch.no_grad():
        bar_u, views = model.views()
        _, weights = model.fusion(views)
    train_pairs, valid = torch.as_tensor(dm.data.train), torch.as_tensor(dm.data.valid)
    got_views = sorted(k.split("/")[1] for k in logged if k.startswith("val/view_"))
    assert got_views == sorted(f"view_{n}" for n in names)
    for name, view in zip(["interaction", "feature", "kg"], views):
        if names:
            assert logged[f"val/view_{name}/recall@20"] == pytest.approx(
                brute_recall20(bar_u, view, train_pairs, valid), abs=1e-6)
    if names:
        means = [logged[f"val/fusion_weight/{n}"] for n in names]
        assert sum(means) == pytest.approx(1.0, abs=1e-5)  # AILF weights are a softmax over views
        for k, n in enumerate(names):
            assert means[k] == pytest.approx(float(weights[:, k].mean()), abs=1e-6)
            assert logged[f"val/fusion_weight_std/{n}"] == pytest.approx(float(weights[:, k].std()), abs=1e-6)
    else:  # one view: it is the model itself, nothing to tell apart
        assert not any(k.startswith("val/fusion_weight") for k in logged)


def test_run_record_holds_view_scores_and_share_of_g_per_refresh(tmp_path):
    train(make_cfg(tmp_path, SYNTH + ["trainer.max_epochs=2", "test=false"]))
    rec = json.loads((tmp_path / "run" / "record.json").read_text())
    for n in ("interaction", "feature", "kg"):
        assert 0.0 <= rec["val"][f"view_{n}/recall@20"] <= 1.0
        assert 0.0 < rec["val"][f"fusion_weight/{n}"] < 1.0
    hist = rec["self_loop_history"]
    assert [h["epoch"] for h in hist] == [0, 1]  # one entry per refresh, after epochs 0 and 1
    for h in hist:
        assert 0.0 < h["g_share"] < 1.0
    off = make_cfg(tmp_path / "off", SYNTH + ["trainer.max_epochs=1", "test=false", "model.self_loop.enabled=false"])
    train(off)
    assert json.loads((tmp_path / "off" / "run" / "record.json").read_text())["self_loop_history"] == []

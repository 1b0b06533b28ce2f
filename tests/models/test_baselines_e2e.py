"""Every baseline of Table II trains one epoch end to end on ml-100k-kg-tiny through Hydra
compose and `slifmr.train.train`, and gives finite, consistent test metrics."""

from __future__ import annotations

import math

import pytest
import torch

from hydra_compose import make_cfg
from slifmr.train import train


# a small denoiser keeps the diffusion models' epoch short (the default |E| -> 1000 -> |E| MLP is
# the release's; nothing else changes)
SMALL = {"diffmm": ["model.denoiser_dims=[32]"], "diffkg": ["model.denoiser_dims=[32]"]}


@pytest.mark.parametrize("model", ["ngcf", "bm3", "freedom", "kgat", "kgin", "kgcl", "diffmm", "diffkg", "tmfun"])
def test_baseline_trains_one_epoch_end_to_end(tmp_path, shared_data, model):
    cfg = make_cfg(tmp_path, ["dataset=ml-100k-kg-tiny", f"paths.data_dir={shared_data}", f"model={model}",
                              "trainer.max_epochs=1", "callbacks.progress_bar=null",
                              "trainer.enable_progress_bar=false", *SMALL.get(model, [])])
    metrics = train(cfg)
    for k in (10, 20, 50):
        for m in ("recall", "ndcg", "precision"):
            v = metrics[f"test/{m}@{k}"]
            assert math.isfinite(v) and 0.0 <= v <= 1.0, (model, m, k, v)
    assert metrics["test/recall@50"] >= metrics["test/recall@10"]
    assert math.isfinite(metrics["train/loss"])
    # configs mirror the code: the yaml's keys are exactly the constructor's saved arguments
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert set(ckpt["hyper_parameters"]) - {"meta", "topk", "lr"} == set(cfg.model) - {"_target_", "topk", "lr"}

"""The opt-in speed switches (callbacks/accelerate.py): off by default and then untouched global
state; TF32 set for the run and restored; a compiled loss trains to the same metrics."""

from __future__ import annotations

import inspect

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from hydra_compose import make_cfg
from slifmr.callbacks.accelerate import Accelerate
from slifmr.data.datamodule import RecDataModule
from slifmr.models.mf import MF


def _meta() -> dict:
    return {"n_users": 5, "n_items": 7, "n_entities": 7, "n_relations": 1, "features": {}, "n_kg_relations": 0}


def test_default_config_sets_nothing(tmp_path):
    cfg = make_cfg(tmp_path, [])
    node = cfg.callbacks.accelerate
    assert set(node) - {"_target_"} == set(inspect.signature(Accelerate).parameters)  # config mirrors constructor
    cb = instantiate(node)
    model = MF(_meta())
    before = torch.get_float32_matmul_precision()
    other = "medium" if before != "medium" else "high"
    torch.set_float32_matmul_precision(other)  # whatever the setting, the default leaves it alone
    try:
        cb.setup(None, model, "fit")
        assert torch.get_float32_matmul_precision() == other
        assert "loss" not in vars(model)  # eager: the class's own method
        cb.teardown(None, model, "fit")
        assert torch.get_float32_matmul_precision() == other
    finally:
        torch.set_float32_matmul_precision(before)


def test_float32_matmul_precision_is_set_for_the_run_and_restored():
    before = torch.get_float32_matmul_precision()
    cb = Accelerate(float32_matmul_precision="high" if before != "high" else "medium")
    model = MF(_meta())
    cb.setup(None, model, "fit")
    assert torch.get_float32_matmul_precision() == cb.float32_matmul_precision
    cb.teardown(None, model, "fit")
    assert torch.get_float32_matmul_precision() == before
    with pytest.raises(ValueError, match="float32_matmul_precision"):
        Accelerate(float32_matmul_precision="tf32")


class _SeesCompiled(pl.Callback):
    def on_train_end(self, trainer, pl_module):
        self.compiled = "loss" in vars(pl_module)


def _fit(shared_data, accelerate: Accelerate) -> tuple[dict[str, float], bool, MF]:
    dm = RecDataModule("ml-100k-kg-tiny", str(shared_data / "ml-100k-kg-tiny"), batch_size=1024, seed=0)
    dm.setup("fit")
    torch.manual_seed(0)
    model = MF(dm.meta, embedding_dim=16, lr=1e-2)
    seen = _SeesCompiled()
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_model_summary=False, enable_progress_bar=False, num_sanity_val_steps=0,
                         callbacks=[accelerate, seen])
    trainer.fit(model, datamodule=dm)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}, seen.compiled, model


def test_compiled_loss_trains_to_the_same_metrics(shared_data):
    """backend aot_eager: dynamo's capture and AOT autograd without code generation (inductor builds
    C++ here, minutes on a 2-core machine; its kernels may round differently)."""
    eager, was_compiled, _ = _fit(shared_data, Accelerate())
    compiled, is_compiled, model = _fit(shared_data, Accelerate(compile=True, compile_backend="aot_eager"))
    assert not was_compiled and is_compiled
    assert "loss" not in vars(model)  # back to eager after the fit
    assert set(compiled) == set(eager) and "val/recall@20" in eager and "train/loss" in eager
    for k, v in eager.items():
        assert compiled[k] == pytest.approx(v, rel=1e-5, abs=1e-7), k

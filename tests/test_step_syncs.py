"""A training epoch reads no tensor on the host unless a progress bar asks for one.

On a GPU every host read (``.item()``, ``float(t)``, ...) waits for the queued kernels, so a read
per step keeps the GPU idle while the CPU catches up (issue 13 item 3). The reads are counted
on the CPU (``aten::_local_scalar_dense``, the op behind every such read) over the training part
of an epoch (validation excluded), under a real Trainer, from the end of the first step to the end
of the last (the first step builds the model's graph caches). Reads inside ``torch.optim`` and ``torch.utils.data``
are left out: they read tensors that live on the CPU whatever the model's device (Adam's step
counters unless ``capturable``/``fused``; the DataLoader's base seed once per epoch).
"""

from __future__ import annotations

import traceback

import pytorch_lightning as pl
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from slifmr.callbacks.console import ProgressBar
from slifmr.data.datamodule import RecDataModule
from slifmr.models.kgat import KGAT
from slifmr.models.lightgcn import LightGCN

READ = torch.ops.aten._local_scalar_dense.default
CPU_ONLY = ("torch/optim/", "torch/utils/data/")


class _HostReads(TorchDispatchMode, pl.Callback):
    """Counts host reads while the training loop runs (not during validation)."""

    def __init__(self) -> None:
        super().__init__()
        self.on, self.reads, self.steps = False, 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.on and func is READ and not any(p in f.filename for f in traceback.extract_stack()
                                                  for p in CPU_ONLY):
            self.reads += 1
        return func(*args, **(kwargs or {}))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # last in the callbacks: the bar's read at this step's end is counted; validation is not
        self.steps += 1
        self.on = batch_idx + 1 < trainer.num_training_batches


class _NoSyncAfterFirstStep(pl.Callback):
    """CUDA: any synchronising call from the end of the first step to the end of the last raises."""

    def __init__(self) -> None:
        self.steps, self.devices = 0, set()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.devices |= {v.device.type for v in batch.values() if isinstance(v, torch.Tensor)}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps += 1
        last = batch_idx + 1 >= trainer.num_training_batches
        torch.cuda.set_sync_debug_mode("default" if last else "error")

    def on_exception(self, trainer, pl_module, exception):
        torch.cuda.set_sync_debug_mode("default")


def _fit(shared_data, model_cls, bar_every: int | None, log_every: int, device: str = "cpu",
         counter: pl.Callback | None = None) -> pl.Callback:
    dm = RecDataModule("ml-100k-kg-tiny", str(shared_data / "ml-100k-kg-tiny"), batch_size=512, seed=0)
    dm.setup("fit")
    torch.manual_seed(0)
    model = model_cls(dm.meta, embedding_dim=16)
    counter = counter or _HostReads()
    callbacks = ([ProgressBar(refresh_rate=bar_every)] if bar_every else []) + [counter]
    trainer = pl.Trainer(max_epochs=1, accelerator=device, devices=1, logger=False, enable_checkpointing=False,
                         enable_model_summary=False, enable_progress_bar=bar_every is not None,
                         log_every_n_steps=log_every, num_sanity_val_steps=0, limit_val_batches=1,
                         callbacks=callbacks)
    if isinstance(counter, TorchDispatchMode):
        with counter:
            trainer.fit(model, datamodule=dm)
    else:
        trainer.fit(model, datamodule=dm)
    return counter


@pytest.mark.parametrize("model_cls", [LightGCN, KGAT])
def test_no_host_read_in_a_training_epoch_without_a_bar(shared_data, model_cls):
    counter = _fit(shared_data, model_cls, bar_every=None, log_every=1)  # Lightning logs at every step
    assert counter.steps >= 5
    assert counter.reads == 0


def test_a_bar_reads_the_loss_only_when_it_refreshes(shared_data):
    counter = _fit(shared_data, LightGCN, bar_every=4, log_every=50)
    assert counter.steps >= 8
    # one read of the step loss per refresh: at steps 4, 8, ... and the epoch's last
    assert 1 <= counter.reads <= counter.steps // 4 + 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_training_epoch_never_synchronises(shared_data):
    """Batches drawn on the GPU (no host-to-device copy), nothing read: no sync between steps 2..N."""
    watch = _fit(shared_data, LightGCN, bar_every=None, log_every=1, device="gpu", counter=_NoSyncAfterFirstStep())
    assert watch.steps >= 5 and watch.devices == {"cuda"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_ranking_chunks_are_pinned(shared_data):
    """Validation chunks come pinned, so their copy to the GPU does not wait for the queue."""
    dm = RecDataModule("ml-100k-kg-tiny", str(shared_data / "ml-100k-kg-tiny"), eval_batch_size=64, seed=0)
    dm.setup("fit")
    trainer = pl.Trainer(accelerator="gpu", devices=1, logger=False)
    dm.trainer = trainer
    chunk = next(iter(dm.val_dataloader()))
    assert all(v.is_pinned() for v in chunk.values())
    dm.trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False)
    assert not any(v.is_pinned() for v in next(iter(dm.val_dataloader())).values())

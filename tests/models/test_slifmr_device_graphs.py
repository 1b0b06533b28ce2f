"""Issue 13 item 1: SLIF-MR's graphs are built on the model's device before the steps that read
them. Every training step only reads cached graphs: no graph build (counted by the store), no host
read of a tensor (a sync on a GPU), no host-device copy; a self-loop refresh rebuilds what it
changed at refresh time."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from slifmr.callbacks.self_loop import SelfLoopCallback
from slifmr.config import register_resolvers
from slifmr.data.synthetic_datamodule import SyntheticDataModule
from slifmr.graphs.adjacency import SparseOperator

register_resolvers()

SYNC = "aten::_local_scalar_dense"  # .item(), int(t), bool(t), .tolist(): a host read (a sync on a GPU)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def model_config(name: str = "slifmr", **model):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="slifmr.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={name}"] + [f"model.{k}={v}" for k, v in model.items()])
    return cfg.model


def data() -> SyntheticDataModule:
    dm = SyntheticDataModule(name="device-graphs", n_users=120, n_items=60, batch_size=256, eval_batch_size=64)
    dm.setup()
    return dm


def model_on(dm, device: str, name: str = "slifmr", **model):
    torch.manual_seed(0)
    m = instantiate(model_config(name, **model), meta=dm.meta, _convert_="all").to(device)
    m.attach(dm.graphs)
    return m


def graph_tensors(obj):
    """Every tensor inside a cached graph object (SparseOperator, KGEdges and its structure, lists)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, SparseOperator):
        yield from (obj.a, obj.a_t)
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from graph_tensors(o)
    elif hasattr(obj, "__dataclass_fields__"):
        for name in obj.__dataclass_fields__:
            yield from graph_tensors(getattr(obj, name))


class StepWatch(pl.Callback):
    """The store's build counts around every training step, and the graphs' devices."""

    def __init__(self):
        self.during_steps: list[tuple[int, dict, dict]] = []
        self.devices: set[torch.device] = set()
        self.after_refresh: dict[int, dict] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._before = dict(trainer.datamodule.graphs.builds)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        store = trainer.datamodule.graphs
        self.during_steps.append((trainer.current_epoch, self._before, dict(store.builds)))
        for value in store._cache.values():
            self.devices.update(t.device for t in graph_tensors(value))

    def on_train_epoch_end(self, trainer, pl_module):  # runs after SelfLoopCallback's (listed first)
        self.after_refresh[trainer.current_epoch] = dict(trainer.datamodule.graphs.builds)


@pytest.mark.parametrize("name", ["slifmr", "freedom"])
@pytest.mark.parametrize("device", DEVICES)
def test_no_training_step_builds_a_graph_and_refresh_rebuilds_at_refresh_time(tmp_path, device, name):
    dm = data()
    extra = {"self_loop.interval": 1} if name == "slifmr" else {}
    model = model_on(dm, device, name, prune_ratio=0.3, **extra)
    watch = StepWatch()
    trainer = pl.Trainer(max_epochs=3, accelerator="gpu" if device == "cuda" else "cpu", devices=1, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                         num_sanity_val_steps=0, limit_val_batches=1, reload_dataloaders_every_n_epochs=1,
                         default_root_dir=str(tmp_path), callbacks=[SelfLoopCallback(), watch])
    trainer.fit(model, datamodule=dm)
    assert len(watch.during_steps) >= 3 and {e for e, _, _ in watch.during_steps} == {0, 1, 2}
    for epoch, before, after in watch.during_steps:
        assert before == after, f"epoch {epoch}: a training step built graphs: {before} -> {after}"
    assert watch.devices == {model.device}, watch.devices
    if name != "slifmr":
        return
    # the refresh after epoch 0 rebuilt A, S and the KG (G^n enters all three) before epoch 1's steps
    first_step_epoch1 = next(b for e, b, _ in watch.during_steps if e == 1)
    for kind in ("A", "S", "KG"):
        assert watch.after_refresh[0][kind] > next(b for e, b, _ in watch.during_steps if e == 0)[kind], kind
        assert first_step_epoch1[kind] >= watch.after_refresh[0][kind]


def test_first_step_after_a_refresh_reads_only_prepared_graphs_and_never_syncs():
    """CPU stand-in for the CUDA check below: right after a refresh and the epoch's prepare, one
    step (no warm-up) builds nothing and reads no tensor on the host."""
    from torch.profiler import ProfilerActivity, profile

    dm = data()
    store = dm.graphs
    model = model_on(dm, "cpu", prune_ratio=0.3)
    batch = dm.train_dataloader().dataset[0]  # (train_dataloader sets the store's epoch to 0)
    cb = SelfLoopCallback()
    store.set_item_graph(cb.build(model.item_representations(), model.self_loop))
    SelfLoopCallback.prepare(model)
    store.set_epoch(1)  # the next epoch: a new pruning sample
    model.prepare_graphs()
    before = dict(store.builds)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model.loss(batch)["loss"].backward()
    assert store.builds == before
    names = [e.name for e in prof.events()]
    assert SYNC not in names, "a step read a tensor on the host"
    assert not [n for n in names if n in ("aten::coalesce", "aten::_coalesce", "aten::_to_sparse_csr")]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_step_after_a_refresh_makes_no_host_device_copy_nor_sync():
    from torch.profiler import ProfilerActivity, profile

    dm = data()
    store = dm.graphs
    model = model_on(dm, "cuda", prune_ratio=0.3)
    batch = {k: v.cuda() for k, v in dm.train_dataloader().dataset[0].items()}
    cb = SelfLoopCallback()
    store.set_item_graph(cb.build(model.item_representations(), model.self_loop))
    SelfLoopCallback.prepare(model)
    store.set_epoch(1)
    model.prepare_graphs()
    torch.cuda.synchronize()
    before = dict(store.builds)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        torch.cuda.set_sync_debug_mode("error")
        try:
            model.loss(batch)["loss"].backward()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        torch.cuda.synchronize()
    assert store.builds == before
    names = [e.name for e in prof.events()]
    assert not [n for n in names if "HtoD" in n or "DtoH" in n], "host-device copy inside a step"
    assert SYNC not in names


# ops whose output size depends on the data: on a GPU each reads a count back (a sync)
SHAPE_SYNC_OPS = ("aten::_unique2", "aten::unique_dim", "aten::unique_consecutive", "aten::nonzero",
                  "aten::masked_select", "aten::nonzero_static")


@pytest.mark.parametrize("name", ["slifmr", "tmfun"])
def test_fixed_shape_step_equals_the_unique_step_and_has_no_data_dependent_shape(monkeypatch, name):
    """CPU stand-in for the CUDA sync test: with the GPU's fixed-shape distinct items forced on the
    CPU, a step computes the same losses and gradients as the torch.unique step, and runs no op
    whose output size depends on the data (each would read a count back to the host on a GPU)."""
    from functools import partial

    from torch.profiler import ProfilerActivity, profile

    import slifmr.models.slifmr as slifmr_module
    import slifmr.models.tmfun as tmfun_module
    from slifmr.models.losses import distinct_items

    dm = data()
    batch = dm.train_dataloader().dataset[0]
    module = slifmr_module if name == "slifmr" else tmfun_module

    def step():
        model = model_on(dm, "cpu", name)
        if name == "slifmr":
            model.prepare_graphs()
        out = model.loss(batch)
        out["loss"].backward()
        return out, {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    want, want_grads = step()
    assert torch.unique(batch["pos"]).numel() < batch["pos"].numel()  # the batch repeats items
    monkeypatch.setattr(module, "distinct_items", partial(distinct_items, fixed_shape=True))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        got, got_grads = step()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6)
    assert got_grads.keys() == want_grads.keys()
    for k in want_grads:
        torch.testing.assert_close(got_grads[k], want_grads[k], rtol=1e-4, atol=1e-6)
    names = {e.name for e in prof.events()}
    assert not names & set(SHAPE_SYNC_OPS), sorted(names & set(SHAPE_SYNC_OPS))

"""SelfLoopCallback (SGE, Eq. 16-18): refresh schedule, the graph it builds, accumulate mode,
logging, checkpoint -> resume, and testing a checkpoint with the graph it was validated with.
The settings are the model's (``model.self_loop``); the callback only runs them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from slifmr.callbacks.self_loop import SelfLoopCallback
from slifmr.data.dataset import RecDataset
from slifmr.graphs.knn import laplacian_normalize
from slifmr.data.graph_store import GraphStore
from slifmr.models.protocols import SelfLoopModel, SelfLoopSettings

N_ITEMS, DIM = 12, 6


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the CI box is shared: OpenMP barriers stall on busy cores
    yield
    torch.set_num_threads(n)


# -- brute-force references -------------------------------------------------------------------------
def brute_raw(x: torch.Tensor, n: int) -> torch.Tensor:
    """Dense top-n cosine graph, self excluded, values clamped at 0 (before normalisation)."""
    x = x.double()
    xn = x / x.norm(dim=1, keepdim=True)
    sim = xn @ xn.T
    sim.fill_diagonal_(float("-inf"))
    vals, cols = sim.topk(n, dim=1)
    return torch.zeros_like(sim).scatter_(1, cols, vals.clamp_min(0))


def brute_topn(m: torch.Tensor, n: int) -> torch.Tensor:
    """Keep the n largest entries of each row (ties: lower column), by a plain loop."""
    out = torch.zeros_like(m)
    for i in range(m.shape[0]):
        for j in sorted(range(m.shape[1]), key=lambda j: (-float(m[i, j]), j))[:n]:
            out[i, j] = m[i, j]
    return out


def sym_norm(g: torch.Tensor) -> torch.Tensor:
    d = g.sum(1)
    s = torch.where(d > 0, d.clamp_min(1e-300).rsqrt(), torch.zeros_like(d))
    return s[:, None] * g * s[None, :]


def edges(g: torch.Tensor) -> set[tuple[int, int]]:
    g = g.to_dense() if g.is_sparse else g
    return {tuple(e) for e in torch.nonzero(g).tolist()}


def dense_g_share(store, g: torch.Tensor) -> float:
    """Mean over items with edges of (item-item weight / row weight) in the dense normalised A^n."""
    n_u, n_i = store.n_users, store.n_items
    a = torch.zeros(n_u + n_i, n_u + n_i, dtype=torch.float64)
    a[store.train_users, n_u + store.train_items] = 1.0
    a[n_u + store.train_items, store.train_users] = 1.0
    a[n_u:, n_u:] = g
    a = sym_norm(a)[n_u:]
    total = a.sum(1)
    share = a[:, n_u:].sum(1)[total > 0] / total[total > 0]
    return float(share.mean())


def gini(degrees: list[int]) -> float:
    d = sorted(degrees)
    n, total = len(d), sum(d)
    return sum((2 * (k + 1) - n - 1) * v for k, v in enumerate(d)) / (n * total)


# -- a stub model and a tiny DataModule -------------------------------------------------------------
def stub_dataset() -> RecDataset:
    rng = np.random.default_rng(0)
    train = np.array([(u, i) for u in range(5) for i in range(N_ITEMS) if (u + i) % 3 == 0], dtype=np.int64)
    empty = np.zeros((0, 2), dtype=np.int64)
    return RecDataset(
        name="stub", n_users=5, n_items=N_ITEMS, train=train, valid=empty, test=empty,
        user_ids=np.arange(5).astype(str), item_ids=np.arange(N_ITEMS).astype(str),
        features={"f": rng.random((N_ITEMS, 4)).astype(np.float32)},
        feature_masks={"f": np.ones(N_ITEMS, dtype=bool)},
    )


class StubData(pl.LightningDataModule):
    def __init__(self):
        super().__init__()
        self.graphs = GraphStore(stub_dataset())

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.zeros(2, 1)), batch_size=1)


def reps(epoch: int) -> torch.Tensor:
    return torch.randn(N_ITEMS, DIM, generator=torch.Generator().manual_seed(100 + epoch))


class PlainModel(pl.LightningModule):
    """Item representations but no self-loop settings: the callback must leave it alone."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.asked: list[int] = []

    def training_step(self, batch, batch_idx):
        return (self.w - 1).pow(2).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def item_representations(self) -> torch.Tensor:
        self.asked.append(self.current_epoch)
        return reps(self.current_epoch)


class StubModel(PlainModel):
    """Fixed item representations per epoch and the self-loop settings it is built with."""

    def __init__(self, **self_loop):
        super().__init__()
        self.self_loop = SelfLoopSettings.from_dict(self_loop)
        self.knn_k = 3


class Recorder(pl.Callback):
    """The store's item graph and the logged metrics as each train epoch starts (and at the end)."""

    def __init__(self):
        self.graphs: dict = {}
        self.metrics: dict = {}
        self.first_loss: dict = {}
        self.test_graph = "unset"

    @staticmethod
    def _graph(trainer):
        g = trainer.datamodule.graphs.item_graph
        return None if g is None else g.to_dense().clone()

    def on_train_epoch_start(self, trainer, pl_module):
        self.graphs[trainer.current_epoch] = self._graph(trainer)
        self.metrics[trainer.current_epoch] = {k: float(v) for k, v in trainer.callback_metrics.items()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == 0:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.first_loss[trainer.current_epoch] = loss.detach().clone()

    def on_fit_end(self, trainer, pl_module):
        self.graphs["end"] = self._graph(trainer)
        self.metrics["end"] = {k: float(v) for k, v in trainer.callback_metrics.items()}

    def on_test_epoch_start(self, trainer, pl_module):
        self.test_graph = self._graph(trainer)


def quiet_trainer(tmp_path, max_epochs, callbacks, **kw) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=str(tmp_path),
        callbacks=callbacks, **kw,
    )


@pytest.fixture(scope="module")
def interval_run(tmp_path_factory):
    dm, model = StubData(), StubModel(interval=2, top_n=3)
    cb, rec = SelfLoopCallback(), Recorder()
    trainer = quiet_trainer(tmp_path_factory.mktemp("interval"), 6, [cb, rec], enable_checkpointing=False)
    trainer.fit(model, datamodule=dm)
    return dm, model, cb, rec


def test_refresh_every_interval_epochs(interval_run):
    dm, model, cb, rec = interval_run
    refresh_epochs = [e for e in range(6) if (e + 1) % 2 == 0]
    assert refresh_epochs == [1, 3, 5]
    assert model.asked == refresh_epochs
    assert cb.n_refreshes == 3
    assert cb.last_refresh_epoch == 5
    # the graph in force at each epoch start comes from the last refresh before it
    for e in range(6):
        before = [r for r in refresh_epochs if r < e]
        if not before:
            assert rec.graphs[e] is None, e
        else:
            want = brute_raw(reps(before[-1]), 3)  # the store holds raw cosines
            torch.testing.assert_close(rec.graphs[e].double(), want, msg=f"epoch {e}")
    changed = [e for e in range(1, 6) if not (
        (rec.graphs[e] is None and rec.graphs[e - 1] is None)
        or (rec.graphs[e] is not None and rec.graphs[e - 1] is not None and torch.equal(rec.graphs[e], rec.graphs[e - 1]))
    )]
    assert changed == [2, 4]  # changes take effect the epoch after a refresh
    torch.testing.assert_close(rec.graphs["end"].double(), brute_raw(reps(5), 3))


def test_refreshed_graph_is_raw_topn_cosine_of_item_representations(interval_run):
    dm, model, cb, rec = interval_run
    raw = brute_raw(reps(5), 3)
    torch.testing.assert_close(cb.raw.to_dense().double(), raw)
    g = dm.graphs.item_graph.to_dense().double()
    torch.testing.assert_close(g, raw)  # handed over at its natural weight; the store normalises A^n once
    assert dm.graphs.a_block == "cosine"
    assert g.diagonal().abs().sum() == 0
    assert all(len(edges(raw[i : i + 1])) == 3 for i in range(N_ITEMS))
    # the store injects it: it is the `sim` relation of the KG view
    heads, tails, ptr, _ = dm.graphs.kg_edges()
    sim = 2 * dm.graphs.n_base_relations
    a, b = int(ptr[sim]), int(ptr[sim + 1])
    assert set(zip(heads[a:b].tolist(), tails[a:b].tolist())) == edges(raw)


def test_refresh_logs_its_statistics(interval_run):
    dm, model, cb, rec = interval_run
    keys = {"self_loop/refresh_seconds", "self_loop/degree_gini", "self_loop/overlap_feature_knn",
            "self_loop/g_share"}
    assert not any(k.startswith("self_loop/") for k in rec.metrics[1])  # nothing before the 1st refresh
    after_first = rec.metrics[2]
    assert keys <= set(after_first)
    assert "self_loop/jaccard_prev" not in after_first  # only from the 2nd refresh on
    assert after_first["self_loop/refresh_seconds"] >= 0.0
    g1 = brute_raw(reps(1), 3)
    in_deg = (g1 != 0).sum(0).tolist()
    assert after_first["self_loop/degree_gini"] == pytest.approx(gini(in_deg), abs=1e-5)
    knn = edges(dm.graphs.feature_knn_raw(3)[0])
    assert after_first["self_loop/overlap_feature_knn"] == pytest.approx(len(edges(g1) & knn) / len(edges(g1)), abs=1e-6)
    assert after_first["self_loop/g_share"] == pytest.approx(dense_g_share(dm.graphs, g1), abs=1e-6)
    # 2nd refresh: Jaccard of the edge sets of refresh 1 and refresh 2
    g3 = brute_raw(reps(3), 3)
    e1, e3 = edges(g1), edges(g3)
    assert rec.metrics[4]["self_loop/jaccard_prev"] == pytest.approx(len(e1 & e3) / len(e1 | e3), abs=1e-6)
    e5 = edges(brute_raw(reps(5), 3))
    assert rec.metrics["end"]["self_loop/jaccard_prev"] == pytest.approx(len(e3 & e5) / len(e3 | e5), abs=1e-6)


@pytest.mark.parametrize("model", [StubModel(enabled=False, interval=1, top_n=3), PlainModel()],
                         ids=["disabled", "no-settings"])
def test_disabled_or_absent_settings_never_touch_the_store(tmp_path, model):
    dm, rec, cb = StubData(), Recorder(), SelfLoopCallback()
    assert isinstance(model, SelfLoopModel) == hasattr(model, "self_loop")
    quiet_trainer(tmp_path, 2, [cb, rec], enable_checkpointing=False).fit(model, datamodule=dm)
    assert model.asked == [] and cb.n_refreshes == 0 and not cb.enabled
    assert rec.graphs["end"] is None


# -- accumulate mode --------------------------------------------------------------------------------
X1 = torch.tensor([[1.0, 0, 0], [1, 0.2, 0], [0, 1, 0], [0, 1, 0.3]])
X2 = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 0.1, 0], [0, 1, 0.2]])


def test_accumulate_mixes_previous_and_new_then_keeps_top_n():
    m = 0.3
    cb, acc = SelfLoopCallback(), SelfLoopSettings(mode="accumulate", top_n=2, momentum=m)
    g1 = cb.build(X1, acc)
    torch.testing.assert_close(g1.to_dense().double(), brute_raw(X1, 2))  # no previous graph: plain top-N
    cb.raw = g1
    got = cb.build(X2, acc).to_dense().double()
    want = brute_topn((1 - m) * brute_raw(X1, 2) + m * brute_raw(X2, 2), 2)
    torch.testing.assert_close(got, want)
    # the hand case discriminates: some row's neighbours differ from both the old and the new graph
    assert edges(want) != edges(brute_raw(X2, 2)) and edges(want) != edges(brute_raw(X1, 2))
    assert all(len(edges(got[i : i + 1])) <= 2 for i in range(4))
    # replace mode ignores the previous graph
    rep = SelfLoopCallback()
    rep.raw = g1
    torch.testing.assert_close(rep.build(X2, SelfLoopSettings(mode="replace", top_n=2)).to_dense().double(),
                               brute_raw(X2, 2))


def test_accumulate_through_the_trainer(tmp_path):
    m = 0.4
    dm, model, rec = StubData(), StubModel(mode="accumulate", interval=1, top_n=3, momentum=m), Recorder()
    cb = SelfLoopCallback()
    quiet_trainer(tmp_path, 2, [cb, rec], enable_checkpointing=False).fit(model, datamodule=dm)
    want = brute_topn((1 - m) * brute_raw(reps(0), 3) + m * brute_raw(reps(1), 3), 3)
    torch.testing.assert_close(cb.raw.to_dense().double(), want)
    torch.testing.assert_close(rec.graphs["end"].double(), want)


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="mode"):
        SelfLoopSettings(mode="grow")
    with pytest.raises(ValueError, match="interval"):
        SelfLoopSettings(interval=0)
    with pytest.raises(ValueError, match="top_n"):
        SelfLoopSettings(top_n=0)
    with pytest.raises(ValueError, match="momentum"):
        SelfLoopSettings(momentum=1.5)
    with pytest.raises(ValueError, match="a_block"):
        SelfLoopSettings(a_block="dense")
    with pytest.raises(ValueError, match=r"unknown model.self_loop keys \['topn'\]"):
        SelfLoopSettings.from_dict({"topn": 5})
    with pytest.raises(ValueError, match="chunk_size"):
        SelfLoopCallback(chunk_size=0)


# -- checkpoint -> resume and test, with the real model on ml-100k-kg-tiny --------------------------
def slifmr_run(shared_data, root, max_epochs, ckpt_path=None, test_ckpt=None):
    from slifmr.data.datamodule import RecDataModule
    from slifmr.models.slifmr import SLIFMR

    pl.seed_everything(7, workers=True)
    dm = RecDataModule(name="ml-100k-kg-tiny", path=str(shared_data / "ml-100k-kg-tiny"), kcore=0,
                       batch_size=2048, seed=7)
    dm.setup("fit")
    model = SLIFMR(dm.meta, embedding_dim=16, topk=(10, 20), self_loop={"interval": 1, "top_n": 5})
    cb, rec = SelfLoopCallback(), Recorder()
    ckpt = ModelCheckpoint(dirpath=str(root / "ckpt"), filename="{epoch}", save_top_k=-1, save_last=True,
                           save_on_train_epoch_end=True)
    trainer = quiet_trainer(root, max_epochs, [cb, rec, ckpt], reload_dataloaders_every_n_epochs=1)
    if test_ckpt is None:
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    else:
        dm.graphs.feature_graphs(model.knn_k)  # graphs built before the test, as after a fit in train.train
        trainer.test(model, datamodule=dm, ckpt_path=test_ckpt, verbose=False)
    return trainer, cb, rec


@pytest.fixture(scope="module")
def resume_runs(tmp_path_factory, shared_data):
    full = slifmr_run(shared_data, tmp_path_factory.mktemp("full"), 3)
    part_root = tmp_path_factory.mktemp("part")
    part = slifmr_run(shared_data, part_root, 2)
    last = part_root / "ckpt" / "last.ckpt"
    assert last.exists()
    resumed = slifmr_run(shared_data, tmp_path_factory.mktemp("resumed"), 3, ckpt_path=str(last))
    return full, part, resumed, last


def test_resume_continues_on_the_same_graph_and_loss(resume_runs):
    (_, full_cb, full), (_, part_cb, part), (_, res_cb, res), _ = resume_runs
    # the interrupted run is the uninterrupted one, cut after epoch 1
    torch.testing.assert_close(part.first_loss[1], full.first_loss[1])
    assert full.graphs[2] is not None
    assert sorted(k for k in res.graphs if k != "end") == [2]  # only epoch 2 was run after the resume
    torch.testing.assert_close(res.graphs[2], full.graphs[2])
    assert not torch.equal(full.graphs[2], full.graphs[1])  # the refresh after epoch 1 matters
    torch.testing.assert_close(res.first_loss[2], full.first_loss[2])
    assert res_cb.n_refreshes == full_cb.n_refreshes == 3
    assert res_cb.last_refresh_epoch == full_cb.last_refresh_epoch == 2
    torch.testing.assert_close(res_cb.raw.to_dense(), full_cb.raw.to_dense())


def test_testing_a_checkpoint_uses_the_graph_it_was_validated_with(resume_runs, shared_data, tmp_path):
    (_, _, full), _, _, last = resume_runs
    trainer, cb, rec = slifmr_run(shared_data, tmp_path, 2, test_ckpt=str(last))
    # last.ckpt is from the end of epoch 1: epoch 1 trained and validated on the graph refreshed
    # after epoch 0, which is what the uninterrupted run had at the start of epoch 1
    assert rec.test_graph is not None and full.graphs[1] is not None
    torch.testing.assert_close(rec.test_graph, full.graphs[1])
    assert not torch.equal(rec.test_graph, full.graphs[2])  # not the graph refreshed after epoch 1
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert 0.0 <= metrics["test/recall@20"] <= 1.0


def test_testing_a_checkpoint_saved_before_any_refresh(resume_runs, shared_data, tmp_path):
    """Epoch 0 ran without a self-loop graph: its checkpoint is tested without one (the graphs
    are then rebuilt inside Lightning's inference mode, which must work too)."""
    _, _, _, last = resume_runs
    first = last.parent / "epoch=0.ckpt"
    assert first.exists()
    trainer, cb, rec = slifmr_run(shared_data, tmp_path, 2, test_ckpt=str(first))
    assert rec.test_graph is None
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert 0.0 <= metrics["test/recall@20"] <= 1.0


def test_a_checkpoint_validated_without_a_graph_is_tested_without_one():
    """After a fit the store holds the graph refreshed after the last epoch; testing the epoch-0
    checkpoint (validated before any refresh) must clear it, not test with it. A checkpoint
    without the callback's state leaves the store alone."""
    cb, model, store = SelfLoopCallback(), StubModel(enabled=True, interval=1, top_n=3), StubData().graphs
    refreshed = brute_raw(reps(0), 3).float().to_sparse().coalesce()  # (I, I) COO, as the callback keeps it
    epoch0 = {"callbacks": {cb.state_key: {"last_refresh_epoch": 0, "n_refreshes": 1, "n_items": N_ITEMS,
                                            "raw_indices": refreshed.indices(), "raw_values": refreshed.values()}}}
    store.set_item_graph(refreshed)
    assert cb.restore_test_graph({"callbacks": {}}, store, model) is False and store.item_graph is not None
    assert cb.restore_test_graph(epoch0, store, model) is False
    assert store.item_graph is None
    epoch1 = {"callbacks": {cb.state_key: {**epoch0["callbacks"][cb.state_key], "eval_indices": refreshed.indices(),
                                           "eval_values": refreshed.values()}}}
    assert cb.restore_test_graph(epoch1, store, model) is True
    torch.testing.assert_close(store.item_graph.to_dense(), refreshed.to_dense())


def test_refresh_graph_by_hand_and_no_grad():
    # 4 vectors: rows a->{b .8, c .6}, b->{c .96, a .8}, ... (the product path: build + normalise)
    x = torch.tensor([[1.0, 0.0], [4.0, 3.0], [3.0, 4.0], [0.0, 1.0]], requires_grad=True)
    g = laplacian_normalize(SelfLoopCallback(chunk_size=3).build(x, SelfLoopSettings(top_n=2)))
    assert not g.requires_grad
    assert g.is_coalesced() and g.shape == (4, 4)
    s = math.sqrt(1.4 * 1.76)
    expected = torch.tensor(
        [
            [0, 0.8 / s, 0.6 / s, 0],
            [0.8 / s, 0, 0.96 / 1.76, 0],
            [0, 0.96 / 1.76, 0, 0.8 / s],
            [0, 0.6 / s, 0.8 / s, 0],
        ]
    )
    torch.testing.assert_close(g.to_dense(), expected)

"""Self-loop graph enhancement (SGE, Eq. 16-18) as a Lightning Callback.

Its settings (``enabled``, ``interval``, ``top_n``, ``mode``, ``momentum``) are the model's
(``model.self_loop``, :class:`~slifmr.models.protocols.SelfLoopSettings`): the callback reads
them from the model it serves (:class:`~slifmr.models.protocols.SelfLoopModel`) and does
nothing for a model without them. Its own knob is only how it computes (``chunk_size``).

Every ``interval`` epochs, on ``on_train_epoch_end`` (after that epoch's validation), build a
top-N cosine graph over the fused item representations (no gradient, chunked) and hand it to
the DataModule's graph store -- the one door back upstream -- which injects it into A, S and
the KG. The graph is callback state: it is saved in checkpoints and restored on resume.

Checkpoint timing: set ``ModelCheckpoint(save_on_train_epoch_end=True)`` (conf/callbacks does):
Lightning runs checkpoint callbacks last, so a checkpoint of epoch e holds the weights of
epoch e, the graph refreshed after it (used to resume training) and the graph that was in
force during epoch e and its validation (used when that checkpoint is tested).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytorch_lightning as pl
import torch
from torch import Tensor

from slifmr.checkpoints import read_checkpoint
from slifmr.graphs.knn import knn_adjacency
from slifmr.graphs.self_loop import interaction_graph, item_block_share
from slifmr.graphs.similarity import degree_gini, edge_jaccard, edge_overlap
from slifmr.graphs.store import GraphSource
from slifmr.models.protocols import SelfLoopModel, SelfLoopSettings

log = logging.getLogger(__name__)


def topn_per_row(rows: Tensor, cols: Tensor, vals: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """Keep the ``n`` largest values of each row (ties: lower column), vectorised."""
    order = torch.argsort(cols, stable=True)
    order = order[torch.argsort(-vals[order], stable=True)]
    order = order[torch.argsort(rows[order], stable=True)]
    r = rows[order]
    start = torch.searchsorted(r, r, right=False)
    keep = order[(torch.arange(len(r), device=r.device) - start) < n]
    return rows[keep], cols[keep], vals[keep]


class SelfLoopCallback(pl.Callback):
    """Refresh the item-item graph G^n from the model's fused item representations."""

    def __init__(self, chunk_size: int = 1024):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size = chunk_size
        self.settings: SelfLoopSettings | None = None  # the served model's, read in setup()
        self.raw: Tensor | None = None  # (I, I) COO, cosine top-N values before normalisation
        self.eval_raw: Tensor | None = None  # the graph in force during the last refreshed epoch
        self.last_refresh_epoch = -1
        self.n_refreshes = 0

    @property
    def enabled(self) -> bool:
        """Whether the served model asks for self-loop refreshes."""
        return self.settings is not None and self.settings.enabled

    @staticmethod
    def settings_of(model: object) -> SelfLoopSettings | None:
        """The self-loop settings of ``model``, or None for a model without them (left alone)."""
        return model.self_loop if isinstance(model, SelfLoopModel) else None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.settings = self.settings_of(pl_module)

    # -- the refresh ---------------------------------------------------------------------------
    def build(self, items: Tensor, settings: SelfLoopSettings) -> Tensor:
        """Raw top-N cosine graph (I, I) of item representations, mixed with the previous one
        in ``accumulate`` mode (``(1-m) G^{n-1} + m G^n``, re-sparsified to top-N per row).
        Computed on the representations' device (the model's), in row chunks."""
        n, m = settings.top_n, settings.momentum
        # weighted kNN drops non-positive cosines: no evidence of similarity, no edge (nor `sim` triple)
        new = knn_adjacency(items.detach().float(), n, chunk_size=self.chunk_size)
        if settings.mode != "accumulate" or self.raw is None:
            return new
        mixed = ((1 - m) * self.raw.to(new.device) + m * new).coalesce()
        rows, cols, vals = topn_per_row(*mixed.indices(), mixed.values(), n)
        return torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, mixed.shape, check_invariants=False).coalesce()

    @staticmethod
    def shared(trainer: pl.Trainer, make: Callable[[], Tensor]) -> Tensor:
        """The graph ``make()`` builds on rank 0, the same on every rank (DDP).

        Every rank holds the same weights, so each could build it; but top-N ties and float
        reductions may differ across devices, and a graph that differs between ranks would make
        the replicas train on different models. Rank 0 builds, the others receive it.
        """
        if trainer.world_size == 1:
            return make()
        g = make() if trainer.is_global_zero else None
        payload = None if g is None else (g.indices(), g.values(), tuple(g.shape))
        idx, vals, shape = trainer.strategy.broadcast(payload, src=0)
        return torch.sparse_coo_tensor(idx, vals, shape, check_invariants=False).coalesce()

    def should_refresh(self, epoch: int) -> bool:
        return self.enabled and (epoch + 1) % self.settings.interval == 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.eval_raw = self.raw  # the graph this epoch trains and validates with

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.should_refresh(trainer.current_epoch):
            return
        model: SelfLoopModel = pl_module  # enabled => setup() found the protocol
        store = trainer.datamodule.graphs
        t0 = time.perf_counter()
        previous = self.raw
        self.raw = self.shared(trainer, lambda: self.build(model.item_representations(), self.settings))
        store.set_item_graph(self.raw, self.settings.a_block)
        self.prepare(pl_module)  # the graphs G^n enters, rebuilt now (on the device), not in the next step
        seconds = time.perf_counter() - t0
        self.last_refresh_epoch = trainer.current_epoch
        self.n_refreshes += 1
        stats = {"self_loop/refresh_seconds": seconds, "self_loop/degree_gini": degree_gini(self.raw),
                 "self_loop/g_share": self.g_share(store)}
        if previous is not None:
            stats["self_loop/jaccard_prev"] = edge_jaccard(previous, self.raw)
        knn = store.feature_knn_raw(model.knn_k, self.raw.device)
        if knn:
            stats["self_loop/overlap_feature_knn"] = max(edge_overlap(self.raw, g) for g in knn)
        pl_module.log_dict(stats, on_step=False, on_epoch=True)

    def g_share(self, store: GraphSource) -> float:
        """Mean over items of the share of an item row's normalised A^n weight that G carries
        (the whole, unpruned A^n of evaluation): how much the self-loop graph can act at all."""
        on = store.inputs(self.raw.device)
        adj = interaction_graph(on["users"], on["items"], store.n_users, store.n_items, self.raw, self.settings.a_block)
        share = item_block_share(adj, store.n_users)
        return float(share[~share.isnan()].mean()) if (~share.isnan()).any() else 0.0

    @staticmethod
    def prepare(pl_module: pl.LightningModule) -> None:
        """Have the model rebuild the whole graphs it reads (``prepare_graphs(training=False)``)
        from the store's new G^n: a model without that hook builds them on first use."""
        prepare = getattr(pl_module, "prepare_graphs", None)
        if callable(prepare):
            prepare(training=False)

    # -- state ---------------------------------------------------------------------------------
    def _push(self, trainer: pl.Trainer, raw: Tensor | None) -> None:
        dm = getattr(trainer, "datamodule", None)
        if dm is not None and getattr(dm, "graphs", None) is not None:
            dm.graphs.set_item_graph(raw, self.settings.a_block)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After a resume, load_state_dict has restored self.raw (on the CPU): the run continues on
        # that graph, moved to the model's device once here.
        if self.enabled:
            device = pl_module.device
            self.raw = None if self.raw is None else self.raw.to(device)
            self.eval_raw = None if self.eval_raw is None else self.eval_raw.to(device)
            self._push(trainer, self.raw)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Test a checkpoint with the graph that was in force when it was validated."""
        path = getattr(trainer, "ckpt_path", None)
        dm = getattr(trainer, "datamodule", None)
        if path and getattr(dm, "graphs", None) is not None:
            self.restore_test_graph(read_checkpoint(path), dm.graphs, pl_module)  # weights only: nothing in the file runs

    def restore_test_graph(self, checkpoint: dict, graphs: GraphSource, model: object) -> bool:
        """Put into ``graphs`` the graph a loaded ``checkpoint`` was validated with, as ``model``'s
        self-loop settings inject it; True if there was one. ``on_test_start`` uses it, and so
        does code that uses a checkpoint outside ``trainer.test`` (slifmr.inference). A checkpoint
        validated before any refresh (epoch 0) clears the store's graph: after a fit, the store
        holds the graph refreshed after the last epoch, which that checkpoint never saw."""
        settings = self.settings_of(model)
        if settings is None or not settings.enabled:
            return False
        state = checkpoint.get("callbacks", {}).get(self.state_key)
        if state is None:  # not written by a run of this callback: leave the store alone
            return False
        graph = self._graph(state, "eval")
        graphs.set_item_graph(graph, settings.a_block)
        return graph is not None

    @staticmethod
    def _graph(state: dict, which: str) -> Tensor | None:
        idx = state.get(f"{which}_indices")
        if idx is None:
            return None
        n = state["n_items"]
        return torch.sparse_coo_tensor(idx, state[f"{which}_values"], (n, n), check_invariants=False).coalesce()

    def state_dict(self) -> dict:
        state: dict = {"last_refresh_epoch": self.last_refresh_epoch, "n_refreshes": self.n_refreshes,
                       "n_items": None}
        for which, g in (("raw", self.raw), ("eval", self.eval_raw)):
            if g is not None:  # on the CPU: a checkpoint loads on any machine
                state[f"{which}_indices"], state[f"{which}_values"] = g.indices().cpu(), g.values().cpu()
                state["n_items"] = g.shape[0]
        return state

    def load_state_dict(self, state: dict) -> None:
        self.last_refresh_epoch = state["last_refresh_epoch"]
        self.n_refreshes = state["n_refreshes"]
        self.raw = self._graph(state, "raw")
        self.eval_raw = self._graph(state, "eval")

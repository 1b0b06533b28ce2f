"""LightningModule base: BPR training step, full-ranking evaluation, optimiser.

A model implements ``embeddings()`` (final user and item representations for ranking) and
``loss(batch)``; everything else -- batched full ranking with masking, metrics, logging,
the optimiser -- is shared so every model is evaluated the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from slifmr.errors import DataError
from slifmr.graphs.store import GraphSource
from slifmr.metrics.ranking import TOPK, RankingMetrics, hits_from_topk, rank_topk


def rows(x: Tensor, index: Tensor) -> Tensor:
    """``x[index]`` for a 1-D ``index`` as ``index_select``, whose backward is ``index_add_``: a fixed
    summation order on the CPU at any thread count. ``x[index]``'s backward is
    ``index_put_(accumulate=True)``, which on the CPU adds repeated rows atomically across threads,
    so the gradient of a batch with repeated users/items changes from run to run at 2 threads.

    x: (N, ...), index: (B,) int64 -> (B, ...)."""
    return x.index_select(0, index)


def adam(params: Iterable[Tensor], lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """torch's Adam, fused (one pass over each parameter per step) where torch has the fused kernel
    (every parameter a float tensor on the CPU or a CUDA device). Same update as the default
    implementation up to float rounding; on the CPU 8.6x faster for DiffKG's 70M-parameter denoiser
    (0.87 s -> 0.10 s a step, one thread), where the unfused update was ~30 % of a training step."""
    params = list(params)
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


class RecModel(pl.LightningModule):
    """Shared training/evaluation plumbing. Subclasses own parameters and losses."""

    def __init__(
        self,
        meta: dict,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        topk: Sequence[int] = TOPK,
    ):
        super().__init__()
        self.meta = dict(meta)
        self.n_users = int(meta["n_users"])
        self.n_items = int(meta["n_items"])
        self.lr = lr
        self.weight_decay = weight_decay
        self.topk = sorted(int(k) for k in topk)
        self.val_metrics = RankingMetrics(self.topk, prefix="val/")
        self.test_metrics = RankingMetrics(self.topk, prefix="test/", collect_per_user=True)
        self.test_per_user: dict[str, Tensor] | None = None  # per-user test values, for paired tests
        self._eval_cache: tuple[Tensor, Tensor] | None = None
        self._view_cache: dict[str, Tensor] = {}  # name -> (I, d) item embeddings of diagnostics()
        self._diag_logs: dict[str, Tensor] = {}
        self.view_metrics = nn.ModuleDict()  # name -> RankingMetrics of a view, made on first use
        self.graphs: GraphSource | None = None  # the DataModule's GraphStore, attached in setup()
        self.last_step_loss: Tensor | None = None  # () on the device: the progress bar's loss (log_train)

    def init_id_embeddings(self, dim: int) -> None:
        """User and item ID tables, Xavier-initialised (the paper's initialiser)."""
        if dim < 1:
            raise DataError(f"model.embedding_dim must be >= 1, got {dim}")
        self.user_emb = nn.Embedding(self.n_users, dim)
        self.item_emb = nn.Embedding(self.n_items, dim)
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)

    # -- to implement -------------------------------------------------------------------------
    def embeddings(self) -> tuple[Tensor, Tensor]:
        """Final (users (U, d), items (I, d)) used for scoring."""
        raise NotImplementedError

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Training losses for one BPR batch; must contain the total under 'loss'."""
        raise NotImplementedError

    def diagnostics(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Called once per validation, after :meth:`embeddings`: (item embeddings to score on their
        own with the users of :meth:`embeddings`, name -> (I, d); extra values to log, ``val/`` key ->
        scalar). SLIF-MR: each view of the fusion and its fusion weights, i.e. what each view is
        worth alone and how much the fusion uses it. Nothing here."""
        return {}, {}

    def score(self, users: Tensor, cache: tuple[Tensor, Tensor]) -> Tensor:
        """(B, I) scores of a chunk of users; dot product by default."""
        user_emb, item_emb = cache
        return user_emb[users] @ item_emb.T

    def batches_per_epoch(self) -> int:
        """Training batches of a whole epoch (not the ``limit_train_batches`` cut): what a model
        that spreads per-epoch work over its steps (DiffMM, DiffKG's row chunks) divides by."""
        try:
            n = len(self.trainer.train_dataloader)
        except (TypeError, AttributeError, RuntimeError):
            n = self.trainer.num_training_batches
        return int(n) if n is not None and math.isfinite(n) and n > 0 else 1

    # -- wiring -------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        # the loggers get the composed config once (runner.instantiate_loggers); Lightning's own copy
        # of the model's flattened hyper-parameters would duplicate its keys (`L` beside `model.L`)
        self._log_hyperparams = False
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None and getattr(dm, "graphs", None) is not None:
            self.attach(dm.graphs)

    def attach(self, graphs: GraphSource) -> None:
        """Give the model the graph store it reads graphs from (outside a Trainer too)."""
        self.graphs = graphs

    def log_train(self, losses: dict[str, Tensor], step_loss: Tensor, batch_size: int) -> None:
        """Log a training step without reading a tensor on the host (on a GPU a read waits for
        the queued kernels): ``train/<name>`` as epoch means, accumulated on the device and
        all-reduced over ranks once, at the epoch's end. The step loss is kept as
        :attr:`last_step_loss` for the progress bar (callbacks/console.py), which reads it only
        when it refreshes: a ``self.log(..., prog_bar=True, on_step=True)`` value would be read by
        Lightning after every step."""
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, on_step=False, on_epoch=True,
                      batch_size=batch_size, prog_bar=False, sync_dist=True)
        self.last_step_loss = step_loss.detach()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        losses = self.loss(batch)
        self.log_train(losses, losses["loss"], len(batch["users"]))
        if "grad_scale" in batch:  # DDP: this rank's share of the global batch (data/sampling.py)
            return losses["loss"] * batch["grad_scale"]
        return losses["loss"]

    @torch.no_grad()
    def _topk(self, batch: dict[str, Tensor], k: int,
              cache: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """(top-k items (B, k), their scores (B, k)) of a ranking batch, its known items masked.
        Evaluation and prediction share it, so recommendations are the lists the metrics score.
        ``cache``: other (users, items) embeddings to rank with (a view alone); default the model's."""
        if cache is None:
            if self._eval_cache is None:
                self._eval_cache = self.embeddings()
            cache = self._eval_cache
        scores = self.score(batch["users"], cache).float()  # (B, I)
        top = rank_topk(scores, batch["mask_rows"], batch["mask_cols"], k)  # masks scores in place
        return top, scores.gather(1, top)

    def _rank(self, batch: dict[str, Tensor], metrics: RankingMetrics,
              cache: tuple[Tensor, Tensor] | None = None) -> None:
        top, _ = self._topk(batch, self.topk[-1], cache)
        hits, n_rel = hits_from_topk(top, batch["gt_rows"], batch["gt_cols"], self.n_items)
        metrics.update(hits, n_rel, batch["users"])

    def on_validation_epoch_start(self) -> None:
        self._eval_cache = None
        self._view_cache = {}

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._rank(batch, self.val_metrics)
        if batch_idx == 0:
            self._view_cache, self._diag_logs = self.diagnostics()
        for name, items in self._view_cache.items():
            if name not in self.view_metrics:
                self.view_metrics[name] = RankingMetrics(self.topk, prefix=f"val/view_{name}/").to(self.device)
            self._rank(batch, self.view_metrics[name], (self._eval_cache[0], items))

    def on_validation_epoch_end(self) -> None:
        # compute() already all-reduced the sums: every rank holds the same values, so Lightning's
        # sync_dist mean changes nothing (and it stops warning under DDP)
        values = self.val_metrics.compute()
        shown = f"val/recall@{20 if 20 in self.topk else self.topk[0]}"  # on the progress bar
        self.log_dict({k: v for k, v in values.items() if k != shown}, prog_bar=False, sync_dist=True)
        self.log(shown, values[shown], prog_bar=True, sync_dist=True)
        self.val_metrics.reset()
        for name in self._view_cache:  # one view alone: only its Recall@20 is kept
            m = self.view_metrics[name]
            self.log_dict({k: v for k, v in m.compute().items() if k.endswith("/recall@20")}, sync_dist=True)
            m.reset()
        if self._diag_logs:
            self.log_dict(self._diag_logs, sync_dist=True)
        self._eval_cache = None
        self._view_cache, self._diag_logs = {}, {}

    def on_test_epoch_start(self) -> None:
        self._eval_cache = None

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._rank(batch, self.test_metrics)

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute(), sync_dist=True)  # see on_validation_epoch_end
        self.test_per_user = {k: v.cpu() for k, v in self.test_metrics.per_user_values().items()}
        self.test_metrics.reset()
        self._eval_cache = None

    def on_predict_epoch_start(self) -> None:
        self._eval_cache = None

    def predict_step(self, batch: dict, batch_idx: int = 0, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """Top-``batch["k"]`` recommendations of ``batch["users"]`` (B,), the items at
        (``mask_rows``, ``mask_cols``) excluded: {"users" (B,), "items" (B, k), "scores" (B, k)},
        internal ids, rank order as in evaluation (ties: lower item id). Excluded items pad
        (score -inf) only when a user has fewer than k others. Call ``on_predict_epoch_start``
        after the weights or graphs change: the embeddings are computed once and reused."""
        users = batch["users"]
        empty = users.new_zeros(0)
        mask_rows, mask_cols = batch.get("mask_rows", empty), batch.get("mask_cols", empty)
        items, scores = self._topk({"users": users, "mask_rows": mask_rows, "mask_cols": mask_cols},
                                   int(batch.get("k", self.topk[-1])))
        return {"users": users, "items": items, "scores": scores}

    def on_predict_epoch_end(self) -> None:
        self._eval_cache = None

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Name the model class in the checkpoint, so `slifmr.evaluate` rebuilds the right model
        whatever `model=` its config says."""
        checkpoint["slifmr_model_class"] = f"{type(self).__module__}.{type(self).__qualname__}"

    def configure_optimizers(self):
        return adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)

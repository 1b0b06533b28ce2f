"""Where a run's time goes, and what validation said each epoch: the timing half of the result
record (``slifmr.report.records`` writes it; ``train.py`` adds the data-preparation time, which
happens before the Trainer exists).

Phases (seconds, summed over the run):

- ``dataloading``: from an epoch's start or the previous batch's end to the next batch's start
  (BPR sampling is lazy, per batch, so this is sampling + collation + transfer);
- ``train_step``: ``on_train_batch_start`` -> ``on_train_batch_end`` (forward, backward, step);
- ``self_loop_refresh``: the self-loop callback's own measurement of its refreshes;
- ``validation`` and ``test``: the evaluation loops (full ranking + metrics);
- ``fit``: the whole of ``trainer.fit`` (so fit minus the above = checkpointing, hooks, logging).

The history and timings go into every checkpoint and come back only when training resumes
(``on_load_checkpoint`` while fitting), so a resumed run's record holds the whole run; testing
a checkpoint (Lightning restores callback state then too) keeps this run's own values.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import pytorch_lightning as pl

REFRESH_KEY = "self_loop/refresh_seconds"  # logged by callbacks/self_loop.py per refresh


class RunRecordCallback(pl.Callback):
    """Accumulates per-phase wall time, epochs run and the per-epoch validation metrics."""

    def __init__(self, monitor: str = "val/recall@20", mode: str = "max") -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"run_record.mode must be 'max' or 'min', got '{mode}'")
        self.monitor, self.mode = monitor, mode
        self.seconds: dict[str, float] = defaultdict(float)
        self.val_history: list[dict[str, Any]] = []  # {"epoch": e, "recall@20": ..., ...} per validation
        self.self_loop_history: list[dict[str, Any]] = []  # {"epoch": e, "g_share": ..., ...} per refresh
        self.epochs_run = 0
        self._mark: float | None = None  # end of the last timed train event
        self._starts: dict[str, float] = {}
        self._refreshes_seen = 0

    # -- helpers ----------------------------------------------------------------------------------
    def _start(self, phase: str) -> None:
        self._starts[phase] = time.perf_counter()

    def _stop(self, phase: str) -> None:
        t0 = self._starts.pop(phase, None)
        if t0 is not None:
            self.seconds[phase] += time.perf_counter() - t0

    def _collect_refreshes(self, trainer: pl.Trainer) -> None:
        """Add the self-loop refresh time logged since the last look (one refresh per epoch at
        most, detected by the callback's refresh counter so a stale logged value is not re-added),
        and that refresh's statistics (share of G in A, overlap, ...) to ``self_loop_history``."""
        for cb in trainer.callbacks:
            n = getattr(cb, "n_refreshes", None)
            if n is None or n <= self._refreshes_seen:
                continue
            value = trainer.callback_metrics.get(REFRESH_KEY)
            if value is not None:
                self.seconds["self_loop_refresh"] += float(value)
            stats = {k[len("self_loop/"):]: float(v) for k, v in trainer.callback_metrics.items()
                     if k.startswith("self_loop/") and k != REFRESH_KEY}
            self.self_loop_history.append({"epoch": int(getattr(cb, "last_refresh_epoch", -1)), **stats})
            self._refreshes_seen = n

    # -- resume -------------------------------------------------------------------------------------
    STATE_KEY = "slifmr_run_record"

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint[self.STATE_KEY] = {"val_history": list(self.val_history), "epochs_run": self.epochs_run,
                                      "seconds": dict(self.seconds)}

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        state = checkpoint.get(self.STATE_KEY)
        if state is None or trainer.state.fn != "fit":
            return
        self.val_history = [dict(h) for h in state["val_history"]]
        self.epochs_run = int(state["epochs_run"])
        self.seconds = defaultdict(float, state["seconds"])

    # -- fit ----------------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start("fit")
        self._refreshes_seen = max([getattr(cb, "n_refreshes", 0) for cb in trainer.callbacks] or [0])

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._collect_refreshes(trainer)
        self._stop("fit")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._collect_refreshes(trainer)  # the previous epoch's refresh is logged by now
        self._mark = time.perf_counter()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        now = time.perf_counter()
        if self._mark is not None:
            self.seconds["dataloading"] += now - self._mark
        self._starts["train_step"] = now

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self._stop("train_step")
        self._mark = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epochs_run += 1
        self._mark = None

    # -- evaluation -------------------------------------------------------------------------------
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._start("validation")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._stop("validation")
        self._mark = None  # validation inside an epoch is not dataloading time
        values = {k[len("val/"):]: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        self.val_history.append({"epoch": int(trainer.current_epoch), **values})

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start("test")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop("test")

    # -- summary ----------------------------------------------------------------------------------
    def best(self) -> dict[str, Any] | None:
        """The validation entry of the best epoch by ``monitor`` (first one on ties, as
        ModelCheckpoint keeps the first strictly-best), or None if there is none."""
        key = self.monitor.removeprefix("val/")
        scored = [h for h in self.val_history if h.get(key) == h.get(key)]  # drops NaN / missing
        if not scored:
            return None
        sign = 1.0 if self.mode == "max" else -1.0
        best = scored[0]
        for h in scored[1:]:
            if sign * h[key] > sign * best[key]:
                best = h
        return best

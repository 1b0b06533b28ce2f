"""The run's result record (``slifmr.records``), written by this callback when the test ends
(``slifmr.report`` only reads records): where the run's time went, what validation said each
epoch, what the test scored per user, and what the run was (its composed config, handed over
by ``train.py`` with :meth:`RunRecordCallback.bind` with the data-preparation time, which
happens before the Trainer exists). A run that is not tested writes it with
:meth:`RunRecordCallback.write` after the fit.

Phases (seconds, summed over the run):

- ``epoch_start``: from an epoch's start to its first batch's start: the model's per-epoch work
  (DiffMM's and DiffKG's regenerated graphs, KGCL's augmented views, FREEDOM's and SLIF-MR's
  pruned graphs), the loader's new iterator and the first batch;
- ``dataloading``: from the previous batch's end to the next batch's start (BPR sampling is lazy,
  per batch, so this is sampling + collation + transfer);
- ``train_step``: ``on_train_batch_start`` -> ``on_train_batch_end`` (forward, backward, step);
- ``self_loop_refresh``: the self-loop callback's own measurement of its refreshes;
- ``validation`` and ``test``: the evaluation loops (full ranking + metrics);
- ``fit``: the whole of ``trainer.fit`` (so fit minus the above = checkpointing, hooks, logging).

The history and timings go into every checkpoint and come back only when training resumes
(``on_load_checkpoint`` while fitting), so a resumed run's record holds the whole run; testing
a checkpoint (Lightning restores callback state then too) keeps this run's own values.
"""

from __future__ import annotations

import platform
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from slifmr.callbacks.provenance import cpu_description, git_revision, memory, package_version
from slifmr.config import hydra_parts, plain_config, sweep_group
from slifmr.records import SCHEMA, write_record

REFRESH_KEY = "self_loop/refresh_seconds"  # logged by callbacks/self_loop.py per refresh


# the phases timed inside ``trainer.fit`` (fit minus their sum is ``fit_overhead``)
FIT_PHASES = ("epoch_start", "dataloading", "train_step", "self_loop_refresh", "validation")


class RunRecordCallback(pl.Callback):
    """Accumulates per-phase wall time, epochs run and the per-epoch validation metrics."""

    def __init__(self, monitor: str = "val/recall@20", mode: str = "max", synchronize: bool = False) -> None:
        """``synchronize``: wait for the GPU before every timer read (CUDA calls return before their
        kernels run, so without it a step's time is its launch time and the wait shows up in the
        next phase). For benchmarks (benchmarks/gpu.py): each read costs the GPU its queue."""
        if mode not in ("max", "min"):
            raise ValueError(f"run_record.mode must be 'max' or 'min', got '{mode}'")
        self.monitor, self.mode = monitor, mode
        self.synchronize = synchronize
        self.seconds: dict[str, float] = defaultdict(float)
        self.val_history: list[dict[str, Any]] = []  # {"epoch": e, "recall@20": ..., ...} per validation
        self.self_loop_history: list[dict[str, Any]] = []  # {"epoch": e, "g_share": ..., ...} per refresh
        self.epochs_run = 0
        self._mark: float | None = None  # end of the last timed train event
        self._epoch_opening = False  # between an epoch's start and its first batch
        self._starts: dict[str, float] = {}
        self._refreshes_seen = 0
        self._run: dict[str, Any] | None = None  # bind(): the composed config and the run's clock
        self.written: Path | None = None  # the record file, once written

    # -- helpers ----------------------------------------------------------------------------------
    def _now(self) -> float:
        if self.synchronize and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        return time.perf_counter()

    def _start(self, phase: str) -> None:
        self._starts[phase] = self._now()

    def _stop(self, phase: str) -> None:
        t0 = self._starts.pop(phase, None)
        if t0 is not None:
            self.seconds[phase] += self._now() - t0

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
        self._mark = self._now()
        self._epoch_opening = True  # the gap to the first batch holds the model's epoch hook

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        now = self._now()
        if self._mark is not None:
            self.seconds["epoch_start" if self._epoch_opening else "dataloading"] += now - self._mark
        self._epoch_opening = False
        self._starts["train_step"] = now

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self._stop("train_step")
        self._mark = self._now()

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
        if self._run is not None:
            self.write(trainer)

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

    # -- the record ---------------------------------------------------------------------------------
    def bind(self, cfg, started: float, data_seconds: float | None = None) -> None:
        """Tell the callback what run it records: the composed config, the ``time.perf_counter()``
        at the run's start and the data-preparation time (both taken before the Trainer exists)."""
        # the checkout the run's code was imported from is the one at its start: a commit or a
        # checkout switch during a long run must not relabel it (records say the end state too then)
        self._run = {"cfg": cfg, "started": started, "data_seconds": data_seconds, "git": git_revision()}

    def _git_provenance(self) -> dict[str, Any] | None:
        """The checkout at the run's start; ``at_end`` too when it differs when the record is written."""
        start, end = (self._run or {}).get("git"), git_revision()
        if start is None:
            return end
        return start if end == start else {**start, "at_end": end}

    def write(self, trainer: pl.Trainer) -> Path | None:
        """Build and write the record into ``paths.output_dir`` (rank 0 only under DDP); its path."""
        if self._run is None:
            raise RuntimeError("RunRecordCallback.write: bind(cfg, started) first (train.py does)")
        if not trainer.is_global_zero:
            return None
        record, per_user = self.build(trainer)
        self.written = write_record(Path(self._run["cfg"].paths.output_dir), record, per_user)
        return self.written

    def seconds_by_phase(self) -> dict[str, float | None]:
        """Seconds per phase (see the module docstring), rounded; ``total`` up to now."""
        seconds: dict[str, float | None] = {"data_preparation": self._run["data_seconds"]}
        for p in (*FIT_PHASES, "fit", "test"):
            seconds[p] = self.seconds.get(p, 0.0)
        inner = sum(seconds[p] for p in FIT_PHASES)
        seconds["fit_overhead"] = max(seconds["fit"] - inner, 0.0)  # checkpointing, logging, hooks
        seconds["total"] = time.perf_counter() - self._run["started"]
        return {k: None if v is None else round(v, 4) for k, v in seconds.items()}

    def build(self, trainer: pl.Trainer) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
        """The record of the run so far, and its per-user test values (None if it was not tested)."""
        cfg = self._run["cfg"]
        overrides, choices = hydra_parts(cfg)
        best = self.best()
        model = trainer.lightning_module
        per_user = None
        if getattr(model, "test_per_user", None) is not None:
            per_user = {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v) for k, v in model.test_per_user.items()}
        target = str(cfg.model.get("_target_", ""))
        record = {
            "schema": SCHEMA,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "status": "completed",
            "run_dir": str(Path(cfg.paths.output_dir).resolve()),
            "model": choices.get("model") or target.rsplit(".", 1)[-1].lower(),
            "model_class": target,
            "dataset": str(cfg.dataset.get("name", choices.get("dataset", ""))),
            "seed": cfg.get("seed"),
            "sweep_name": sweep_group(cfg.get("sweep_name")),
            "overrides": overrides,
            "config": plain_config(cfg),
            "monitor": self.monitor,
            "best_epoch": None if best is None else best["epoch"],
            "epochs": self.epochs_run,
            "val": {k: v for k, v in (best or {}).items() if k != "epoch"},
            "test": {k[5:]: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")},
            "val_history": self.val_history,
            "self_loop_history": self.self_loop_history,
            "time_s": self.seconds_by_phase(),
            "memory": memory(),
            "package": {"name": "slifmr", "version": package_version()},
            "git": self._git_provenance(),
            "env": {
                "python": platform.python_version(), "torch": torch.__version__,
                "pytorch_lightning": pl.__version__, "accelerator": type(trainer.accelerator).__name__,
                "world_size": int(trainer.world_size), **cpu_description(),
            },
        }
        return record, per_user

"""Per-model training epoch on one GPU at the paper's Amazon-Book scale (synthetic), through the
real Lightning Trainer, split into where the time goes. Prints one JSON object.

    python benchmarks/gpu.py                                  # cuda, the six models, < 8 minutes
    python benchmarks/gpu.py --models lightgcn,slifmr --out gpu.json
    python benchmarks/gpu.py --device cpu --tiny              # CPU check of the whole script (tests)

Without CUDA (and ``--device cuda``, the default) it prints ``{"status": "no CUDA", ...}`` and
exits 0.

Each model is built from its own ``conf/model/<name>.yaml`` and trained by a ``pl.Trainer`` for
two epochs of ``--train-batches`` batches of 4,096 (0: whole epochs) with full validation after
each, the callbacks a run uses for timing (``RunRecordCallback``, whose phase split goes into
every run's record.json ``time_s``, here with ``synchronize=true``: the GPU is synchronised
before every timer read) and, for SLIF-MR, its self-loop refresh (``SelfLoopCallback``).
Epoch 0 is warm-up (graph and kNN builds, allocator, cuBLAS) and holds the profiled steps;
epoch 1 is timed. Seconds per epoch = the timed epoch's per-batch step and batch-wait seconds
times the batches of a whole epoch, plus its validation, its self-loop refresh and its loop
overhead (the epoch's wall time minus those phases, scaled per batch likewise).

``kernel_share``: CUDA kernel time over the wall time of ``--profile-steps`` training steps
(torch.profiler, epoch 0 after ``--profile-after`` steps; synchronised at both ends). Below 1
means the GPU waits for the host. ``peak_cuda_gb``: ``torch.cuda.max_memory_allocated`` over
the model's run. ``feature_knn_build_s``: the item feature kNN graphs (k = 10, every modality)
built once from scratch; ``self_loop_refresh_s``: SLIF-MR's refresh in its timed epoch.

One model's failure (an error, out of memory) is recorded under its name and the others go on;
a model is skipped, and says so, once ``--budget-s`` seconds have passed since the start, and a
running one is stopped (Trainer ``max_time``, recorded as an error) at ``--budget-s`` + 60 s.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
import time
import traceback
from pathlib import Path

DEFAULT_MODELS = ("lightgcn", "slifmr", "kgat", "kgin", "kgcl", "freedom")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS))
    ap.add_argument("--tiny", action="store_true", help="a tiny synthetic dataset (a CPU check of the script)")
    ap.add_argument("--train-batches", type=int, default=40,
                    help="batches per epoch actually run (0 = whole epochs); the epoch figure scales to all")
    ap.add_argument("--profile-steps", type=int, default=3)
    ap.add_argument("--profile-after", type=int, default=3, help="warm-up steps of epoch 0 before profiling")
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="no model starts after this many seconds (the script stays < 8 minutes)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--no-knn", action="store_true", help="skip the feature kNN timing (feature_knn_build_s: null)")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here (atomically)")
    return ap.parse_args(argv)


def emit(out: dict, path: Path | None) -> None:
    text = json.dumps(_rounded(out), indent=1)
    print(text, flush=True)
    if path is not None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(path)


def _rounded(x):
    if isinstance(x, float):
        return round(x, 5) if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    return x


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.perf_counter()
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        emit({"status": "no CUDA", "device": args.device, "torch": torch.__version__}, args.out)
        return 0
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from slifmr.warnings_filter import quiet_third_party

    quiet_third_party()
    import logging

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    device = torch.device(args.device)
    ds, gen_s = dataset(args.tiny)
    out: dict = {
        "status": "ok", "device": device_name(device), "torch": torch.__version__, "tiny": args.tiny,
        "users": ds.n_users, "items": ds.n_items, "train_interactions": int(len(ds.train)),
        "triples": int(len(ds.kg)), "batch_size": BATCH, "batches_per_epoch": -(-len(ds.train) // BATCH),
        "generate_s": gen_s, "budget_s": args.budget_s,
    }
    try:
        out["feature_knn_build_s"] = None if args.no_knn else time_knn(ds, device)
    except Exception as e:  # noqa: BLE001 -- recorded, not fatal
        out["feature_knn_build_s"] = None
        out["feature_knn_error"] = f"{type(e).__name__}: {e}"
    out["models"] = {}
    for name in [m for m in args.models.split(",") if m]:
        if time.perf_counter() - started > args.budget_s:
            out["models"][name] = {"skipped": f"--budget-s {args.budget_s:g} s spent before it started"}
            continue
        try:
            left = args.budget_s + 60.0 - (time.perf_counter() - started)
            out["models"][name] = time_model(name, ds, device, args, max_seconds=left)
        except Exception as e:  # noqa: BLE001 -- one model's failure must not hide the others
            out["models"][name] = {"error": f"{type(e).__name__}: {e}",
                                   "where": traceback.format_exc(limit=-3).strip().splitlines()[-3:]}
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        print(name, json.dumps(_rounded(out["models"][name])), file=sys.stderr, flush=True)
    slifmr = out["models"].get("slifmr", {})
    out["self_loop_refresh_s"] = slifmr.get("refresh_s")
    base = out["models"].get("lightgcn", {}).get("epoch_s")
    for r in out["models"].values():
        if base and r.get("epoch_s") is not None:
            r["over_lightgcn"] = r["epoch_s"] / base
    out["wall_s"] = time.perf_counter() - started
    emit(out, args.out)
    return 0


BATCH, EVAL_BATCH, KNN_K = 4096, 2048, 10


def dataset(tiny: bool):
    """(the split dataset, seconds to generate and split it): Amazon-Book scale, or tiny."""
    from slifmr.data.pipeline import build_rec_dataset
    from slifmr.data.synthetic import SyntheticConfig, amazon_book_scale, generate

    t0 = time.perf_counter()
    cfg = SyntheticConfig(n_users=300, n_items=120, n_interactions=6000, n_attributes=40, n_relations=4,
                          triples_per_item=4.0, feature_dims={"visual": 16, "text": 8}) if tiny \
        else amazon_book_scale(seed=0)
    raw = generate(cfg)
    ds = build_rec_dataset(raw, kcore=0, split="random", ratios=(0.8, 0.1, 0.1), seed=0)
    return ds, time.perf_counter() - t0


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_knn(ds, device) -> float:
    """Seconds to build the item feature kNN graphs from scratch (a fresh store, no cache)."""
    from slifmr.data.graph_store import GraphStore

    store = GraphStore(ds, seed=0)
    kwargs = {"device": device} if "device" in inspect.signature(store.feature_knn).parameters else {}
    sync(device)
    t0 = time.perf_counter()
    store.feature_knn(KNN_K, **kwargs)
    sync(device)
    return time.perf_counter() - t0


def datamodule(ds):
    """The project's RecDataModule over the in-memory dataset (its samplers, graph store, loaders)."""
    from slifmr.data.datamodule import RecDataModule

    class InMemory(RecDataModule):
        def load(self):
            self.fingerprint = {"dataset": self.name, "key": "in-memory"}
            return ds

    return InMemory("amazon-book-synthetic", ".", format="synthetic", batch_size=BATCH,
                    eval_batch_size=EVAL_BATCH, seed=0)


def compose(name: str, synchronize: bool):
    """The composed train config with ``model=name`` (as a run composes it); ``synchronize``: the
    run-record timers wait for the GPU (not needed on the CPU, where nothing runs ahead)."""
    from hydra import compose as hydra_compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from slifmr.config import register_resolvers

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="slifmr.conf", version_base="1.3"):
        overrides = [f"model={name}"] + (["callbacks.run_record.synchronize=true"] if synchronize else [])
        return hydra_compose(config_name="train", overrides=overrides)


def time_model(name: str, ds, device, args, max_seconds: float) -> dict:
    from datetime import timedelta

    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate

    cfg = compose(name, synchronize=device.type == "cuda")
    dm = datamodule(ds)
    dm.setup("fit")
    torch.manual_seed(0)
    model = instantiate(cfg.model, meta=dm.meta, _convert_="all")
    recorder = instantiate(cfg.callbacks.run_record)
    clock = EpochClock(recorder, device)
    prof = StepProfiler(device, args.profile_after, args.profile_steps)
    callbacks = [recorder, clock, prof]
    if cfg.callbacks.get("self_loop") is not None:
        callbacks.insert(0, instantiate(cfg.callbacks.self_loop))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    limit = args.train_batches if args.train_batches > 0 else 1.0
    trainer = pl.Trainer(max_epochs=2, accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
                         limit_train_batches=limit, num_sanity_val_steps=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         reload_dataloaders_every_n_epochs=1, callbacks=callbacks,
                         max_time=timedelta(seconds=max(1.0, max_seconds)))
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    fit_s = time.perf_counter() - t0
    if len(clock.epochs) < 2:
        raise RuntimeError(f"only {len(clock.epochs)} epoch(s) ran (stopped by --budget-s?)")
    e = clock.epochs[1]  # the timed epoch
    n_run = max(1, e["batches"])
    full = -(-len(ds.train) // BATCH)
    from slifmr.callbacks.run_record import FIT_PHASES  # the recorder's phases inside fit

    inner = sum(e[p] for p in FIT_PHASES)
    loop_overhead = max(0.0, e["wall"] - inner)
    per_batch = {"step_s": e["train_step"] / n_run, "wait_s": e["dataloading"] / n_run,
                 "overhead_s": loop_overhead / n_run}
    out = {
        "epoch_s": (per_batch["step_s"] + per_batch["wait_s"] + per_batch["overhead_s"]) * full
        + e["epoch_start"] + e["validation"] + e["self_loop_refresh"],
        "epoch_start_s": e["epoch_start"],  # per-epoch work before the first batch (regenerated graphs)
        "step_s_per_epoch": per_batch["step_s"] * full,
        "wait_s_per_epoch": per_batch["wait_s"] * full,
        "loop_overhead_s_per_epoch": per_batch["overhead_s"] * full,
        "validation_s": e["validation"],
        "refresh_s": e["self_loop_refresh"] if any(getattr(c, "n_refreshes", 0) for c in callbacks) else None,
        "step_ms": 1000 * per_batch["step_s"],
        "batches_timed": n_run,
        "warmup_epoch_s": clock.epochs[0]["wall"],
        "kernel_share": prof.kernel_share,
        "profiled_steps": prof.profiled,
        **({"profiler_error": prof.error} if prof.error else {}),
        "peak_cuda_gb": torch.cuda.max_memory_allocated(device) / 1024**3 if device.type == "cuda" else None,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "fit_s": fit_s,
    }
    del trainer, model, dm
    return out


def _callback_base():
    import pytorch_lightning as pl

    return pl.Callback


class EpochClock(_callback_base()):
    """Each epoch's wall time (synchronised) and the recorder's phase seconds within it: the
    difference of its cumulative ``seconds`` between this epoch's start and the next's (the
    refresh at an epoch's end is collected at the next start, or at the fit's end)."""

    def __init__(self, recorder, device) -> None:
        from slifmr.callbacks.run_record import FIT_PHASES

        self.recorder, self.device, self.phases = recorder, device, FIT_PHASES
        self.epochs: list[dict] = []
        self._open: dict | None = None

    def _snapshot(self) -> dict:
        sync(self.device)
        return {"t": time.perf_counter(), **{p: float(self.recorder.seconds.get(p, 0.0)) for p in self.phases}}

    def _close(self) -> None:
        if self._open is None:
            return
        now = self._snapshot()
        start = self._open
        self.epochs.append({"wall": now["t"] - start["t"], "batches": start["batches"],
                            **{p: now[p] - start[p] for p in self.phases}})
        self._open = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:  # after the recorder's (callback order)
        self._close()
        self._open = {**self._snapshot(), "batches": 0}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._open is not None:
            self._open["batches"] += 1

    def on_fit_end(self, trainer, pl_module) -> None:
        self._close()


class StepProfiler(_callback_base()):
    """torch.profiler over ``steps`` training steps of epoch 0, after ``after`` of them:
    (CUDA kernel time) / (their wall time), synchronised at both ends; None on the CPU."""

    def __init__(self, device, after: int, steps: int) -> None:
        self.device, self.after, self.steps = device, after, steps
        self.kernel_share: float | None = None
        self.profiled = 0  # -1: the profiler failed (``error``)
        self.error: str | None = None
        self._prof = None
        self._t0 = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch != 0 or self.steps < 1 or self._prof is not None or self.profiled:
            return
        first = min(self.after, max(0, trainer.num_training_batches - self.steps))
        if batch_idx != first:
            return
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])
        try:  # a profiler that cannot start (no CUPTI) costs the figure, not the model's timing
            self._prof = profile(activities=acts)
            sync(self.device)
            self._prof.__enter__()
        except Exception as e:  # noqa: BLE001
            self._prof, self.error = None, f"{type(e).__name__}: {e}"
            self.profiled = -1
            return
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._prof is None:
            return
        self.profiled += 1
        last = batch_idx + 1 >= trainer.num_training_batches
        if self.profiled < self.steps and not last:
            return
        sync(self.device)
        wall = time.perf_counter() - self._t0
        prof, self._prof = self._prof, None
        try:
            prof.__exit__(None, None, None)
            if self.device.type == "cuda":
                kernel_us = sum(evt.self_device_time_total for evt in prof.key_averages()
                                if getattr(evt, "device_type", None) is not None and evt.device_type.name == "CUDA")
                self.kernel_share = kernel_us / 1e6 / wall if wall > 0 else None
        except Exception as e:  # noqa: BLE001
            self.error = f"{type(e).__name__}: {e}"


if __name__ == "__main__":
    sys.exit(main())

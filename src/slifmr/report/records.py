"""The result record of one run: what it was (config, overrides, versions), what it scored
(best-epoch validation, test, per-user test values) and what it cost (time per phase, memory).

One JSON file per run directory (``record.json``) plus a compact sidecar of per-user test
values (``per_user_test.npz``: ``user`` ids and one float64 array per metric) for paired
significance tests. Both are written to a temporary name and renamed, the sidecar first, so
a reader never sees a half-written record and a record never points at a missing sidecar.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

RECORD_FILE = "record.json"
PER_USER_FILE = "per_user_test.npz"
SCHEMA = "slifmr.record/1"


class ReportError(ValueError):
    """Bad input to the report: no records, unreadable records, unknown metrics."""


# -- atomic writes -------------------------------------------------------------------------------
def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file next to ``path``, fsync, then rename over ``path``:
    readers see either the old file or the complete new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")  # same filesystem
    try:
        with open(tmp, "xb") as f:  # unlike mkstemp, honours the umask (records are meant to be shared)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _jsonable(obj: Any) -> Any:
    """Plain JSON: NaN/inf become null (strict JSON has no NaN), numpy/torch scalars become numbers."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a result record: {obj!r}")


def atomic_write_json(path: Path, obj: Any) -> Path:
    """Serialise first (a bad value fails before anything touches the disk), then write atomically."""
    text = json.dumps(_jsonable(obj), indent=1, allow_nan=False)
    return atomic_write_bytes(path, (text + "\n").encode())


def write_per_user(path: Path, values: dict[str, Any]) -> Path:
    """Per-user arrays (``user`` + one per metric) as an uncompressed .npz, atomically."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in values.items()})
    return atomic_write_bytes(path, buf.getvalue())


def write_record(run_dir: Path, record: dict[str, Any], per_user: dict[str, Any] | None = None) -> Path:
    """Write the sidecar (if any) and then ``record.json`` into ``run_dir``; returns the record path."""
    run_dir = Path(run_dir)
    record = dict(record)
    if per_user is not None:
        write_per_user(run_dir / PER_USER_FILE, per_user)
        metrics = [k for k in per_user if k != "user"]
        record["per_user_test"] = {
            "file": PER_USER_FILE, "n_users": int(len(per_user["user"])), "metrics": metrics,
            "user_id": "internal user index of the prepared dataset (same split settings = same ids)",
        }
    else:
        record.setdefault("per_user_test", None)
    return atomic_write_json(run_dir / RECORD_FILE, record)


# -- building a record from a finished run ---------------------------------------------------------
def hydra_parts(cfg) -> tuple[list[str], dict[str, Any]]:
    """(task overrides, group choices) from the running HydraConfig, else from a composed
    config's ``hydra`` node (tests compose with it), else nothing."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    node = HydraConfig.get() if HydraConfig.initialized() else cfg.get("hydra") if "hydra" in cfg else None
    if node is None:
        return [], {}
    overrides = list(OmegaConf.to_container(node.overrides.task)) if node.get("overrides") else []
    choices = node.runtime.get("choices") if node.get("runtime") else None
    return [str(o) for o in overrides], dict(OmegaConf.to_container(choices)) if choices else {}


def _git_revision() -> dict[str, Any] | None:
    """The checkout's commit (and whether tracked files differ from it) when the package runs
    from a git checkout of this project; None otherwise. Never raises."""
    try:
        here = Path(__file__).resolve().parent
        run = lambda *a: subprocess.run(["git", "-C", str(here), *a], capture_output=True, text=True,  # noqa: E731
                                        timeout=10, check=True).stdout.strip()
        top = Path(run("rev-parse", "--show-toplevel"))
        if not (top / "src" / "slifmr").is_dir():  # some other repository around an installed package
            return None
        return {"revision": run("rev-parse", "HEAD"),
                "dirty": bool(run("status", "--porcelain", "--untracked-files=no"))}
    except Exception:  # noqa: BLE001 - provenance is best effort, a run must not fail for it
        return None


def _package_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("slifmr")
    except PackageNotFoundError:
        return None


def _memory() -> dict[str, float | None]:
    """Peak resident set size of this process (and peak CUDA allocation, if CUDA was used), MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_mb = rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux
    cuda_mb = None
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            cuda_mb = torch.cuda.max_memory_allocated() / 2**20
    except Exception:  # noqa: BLE001
        pass
    return {"peak_rss_mb": round(rss_mb, 1), "cuda_peak_mb": None if cuda_mb is None else round(cuda_mb, 1)}


def build_record(cfg, trainer, metrics: dict[str, float], *, started: float,
                 data_seconds: float | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
    """The record of a finished run, and its per-user test values (None if it was not tested).

    ``started`` is the ``time.perf_counter()`` at the start of the run and ``data_seconds``
    the data-preparation time, both taken by ``train.py`` before the Trainer exists.
    """
    import pytorch_lightning as pl
    import torch
    from omegaconf import OmegaConf

    from slifmr.callbacks.run_record import RunRecordCallback
    from slifmr.config import sweep_group

    overrides, choices = hydra_parts(cfg)
    plain = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    config = OmegaConf.to_container(plain, resolve=True)
    rec_cb = next((c for c in trainer.callbacks if isinstance(c, RunRecordCallback)), None)

    seconds: dict[str, float] = {"data_preparation": data_seconds}
    phases = ("dataloading", "train_step", "self_loop_refresh", "validation", "fit", "test")
    for p in phases:
        seconds[p] = rec_cb.seconds.get(p, 0.0) if rec_cb is not None else None
    if rec_cb is not None:
        inner = sum(seconds[p] for p in ("dataloading", "train_step", "self_loop_refresh", "validation"))
        seconds["fit_overhead"] = max(seconds["fit"] - inner, 0.0)  # checkpointing, logging, hooks
    seconds["total"] = time.perf_counter() - started
    seconds = {k: None if v is None else round(v, 4) for k, v in seconds.items()}

    best = rec_cb.best() if rec_cb is not None else None
    monitor = cfg.eval.get("monitor") if "eval" in cfg else None
    val = {k: v for k, v in (best or {}).items() if k != "epoch"}
    if not val and monitor and monitor in metrics and monitor.startswith("val/"):
        val = {monitor[4:]: metrics[monitor]}  # no RunRecordCallback: the last logged value only
    model = trainer.lightning_module
    per_user = None
    if getattr(model, "test_per_user", None) is not None:
        per_user = {k: v.numpy() if hasattr(v, "numpy") else np.asarray(v) for k, v in model.test_per_user.items()}
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
        "config": config,
        "monitor": monitor,
        "best_epoch": None if best is None else best["epoch"],
        "epochs": rec_cb.epochs_run if rec_cb is not None else int(trainer.current_epoch),
        "val": val,
        "test": {k[5:]: float(v) for k, v in metrics.items() if k.startswith("test/")},
        "val_history": rec_cb.val_history if rec_cb is not None else [],
        "self_loop_history": rec_cb.self_loop_history if rec_cb is not None else [],
        "time_s": seconds,
        "memory": _memory(),
        "package": {"name": "slifmr", "version": _package_version()},
        "git": _git_revision(),
        "env": {
            "python": platform.python_version(), "torch": torch.__version__,
            "pytorch_lightning": pl.__version__, "accelerator": type(trainer.accelerator).__name__,
            "world_size": int(trainer.world_size),
        },
    }
    return record, per_user


def save_run_record(cfg, trainer, metrics: dict[str, float], *, started: float,
                    data_seconds: float | None = None) -> Path | None:
    """Build and write the record of a finished run (rank 0 only under DDP); returns its path."""
    if not trainer.is_global_zero:
        return None
    record, per_user = build_record(cfg, trainer, metrics, started=started, data_seconds=data_seconds)
    return write_record(Path(cfg.paths.output_dir), record, per_user)


# -- reading ----------------------------------------------------------------------------------------
def load_records(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every record under the given run/multirun directories (or record files), each with
    ``_path`` (the record file) added. A path without any record is an error that names it."""
    out: list[dict[str, Any]] = []
    seen: set[Path] = set()
    for p in map(Path, paths):
        if p.is_file():
            files = [p]
        elif p.is_dir():
            files = sorted(p.rglob(RECORD_FILE))
        else:
            raise ReportError(f"no such file or directory: {p}")
        if not files:
            raise ReportError(f"no result records ({RECORD_FILE}) under {p}: is it a run or multirun "
                              f"directory of a run that finished? (records are written after the test)")
        for f in files:
            f = f.resolve()
            if f in seen:
                continue
            seen.add(f)
            try:
                rec = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise ReportError(f"unreadable result record {f}: {e}") from e
            if not str(rec.get("schema", "")).startswith("slifmr.record/"):
                raise ReportError(f"{f} is not a slifmr result record (schema={rec.get('schema')!r})")
            rec["_path"] = str(f)
            out.append(rec)
    return out


def load_per_user(record: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """The per-user test values of a loaded record, or None if it has none."""
    info = record.get("per_user_test")
    if not info:
        return None
    path = Path(record["_path"]).parent / info["file"]
    if not path.exists():
        raise ReportError(f"record {record['_path']} names per-user values {path}, which are missing")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}

"""The result record's files: names, schema, atomic writes and the finished-run reader (no other
slifmr import than its error type).

A run's record says what it was (config, overrides, versions), what it scored (best-epoch
validation, test, per-user test values) and what it cost (time per phase, memory). One JSON
file per run directory (``record.json``) plus a compact sidecar of per-user test values
(``per_user_test.npz``: ``user`` ids and one float64 array per metric) for paired significance
tests. Both are written to a temporary name and renamed, the sidecar first, so a reader never
sees a half-written record and a record never points at a missing sidecar.

The run-record callback (``callbacks/run_record.py``) builds and writes records; ``slifmr.report``
only reads them.
"""

from __future__ import annotations

import io
import json
import math
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from slifmr.errors import DataError

RECORD_FILE = "record.json"
PER_USER_FILE = "per_user_test.npz"
SCHEMA = "slifmr.record/1"


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


def jsonable(obj: Any) -> Any:
    """Plain JSON: NaN/inf become null (strict JSON has no NaN), numpy/torch scalars become numbers."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a result record: {obj!r}")


def atomic_write_json(path: Path, obj: Any) -> Path:
    """Serialise first (a bad value fails before anything touches the disk), then write atomically."""
    text = json.dumps(jsonable(obj), indent=1, allow_nan=False)
    return atomic_write_bytes(path, (text + "\n").encode())


def write_per_user(path: Path, values: dict[str, Any]) -> Path:
    """Per-user arrays (``user`` + one per metric) as an uncompressed .npz, atomically."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in values.items()})
    return atomic_write_bytes(path, buf.getvalue())


def read_finished_record(run_dir: Path) -> dict[str, Any] | None:
    """``run_dir``'s record if the run finished (``status: completed``), else None (no record yet:
    never ran, or killed before its end). A record that is not JSON is an error naming the file."""
    path = Path(run_dir) / RECORD_FILE
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e}); delete the file to run the job again") from e
    return rec if rec.get("status") == "completed" else None


def monitored_value(record: dict[str, Any], monitor: str | None = None) -> float | None:
    """The record's best-epoch validation value of ``monitor`` (``val/<metric>``; default: the
    record's own monitor), None where the record has none."""
    monitor = monitor or record.get("monitor")
    if not monitor:
        return None
    value = (record.get("val") or {}).get(monitor.removeprefix("val/"))
    return float(value) if isinstance(value, (int, float)) else None


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

"""Synthetic result records with known per-user values, written as train.py would write them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slifmr.records import SCHEMA, write_record

METRICS = ("recall@20", "ndcg@20")


def make_record(root: Path, model: str, seed: int, per_user: dict[str, np.ndarray], dataset: str = "toy",
                extra: list[str] | None = None, time_fit: float = 10.0, val: dict[str, float] | None = None,
                monitor: str | None = None) -> Path:
    """One run directory under ``root`` whose test metrics are the means of ``per_user``; ``val`` and
    ``monitor`` as a run records its best-epoch validation scores and the one it selected on."""
    extra = list(extra or [])
    name = ",".join([f"model={model}", *extra, f"seed={seed}", f"dataset={dataset}"])
    run = root / name
    users = np.arange(len(next(iter(per_user.values()))), dtype=np.int64)
    record = {
        "schema": SCHEMA, "status": "completed", "model": model, "dataset": dataset, "seed": seed,
        "overrides": [f"model={model}", f"seed={seed}", f"dataset={dataset}", "trainer.max_epochs=1", *extra],
        "config": {"seed": seed, "model": {"name": model}},
        "test": {m: float(np.mean(v)) for m, v in per_user.items()},
        "val": dict(val or {}), "best_epoch": 0, "epochs": 1,
        "time_s": {"fit": time_fit, "total": time_fit + 1.0},
    }
    if monitor is not None:
        record["monitor"] = monitor
    for o in extra:  # the swept values also live in the resolved config, as in a real run
        key, value = o.split("=")
        node = record["config"]
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        try:
            node[leaf] = float(value)
        except ValueError:  # a named variant (e.g. ablation=wo_kg)
            node[leaf] = value
    return write_record(run, record, {"user": users, **per_user})

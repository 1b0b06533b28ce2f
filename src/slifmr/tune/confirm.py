"""After the budget: re-train the best points on more seeds (validation only) and select on the mean.

A search runs each point once, at one seed. Where seed noise is the size of the differences between
points (ml-100k-kg: 943 validation users, seed std ~0.005 Recall@20), the best single trial is partly
the luckiest one, and the defaults' single trial may be an unlucky one: on ml-100k-kg SLIF-MR's
search selected a point +2.5 % above its defaults' trial, and over seeds that point was below the
defaults on validation too. ``tune.confirm.top_k`` > 0 turns on this phase: the ``top_k`` best
completed trials, plus the defaults' trial when it completed, are each trained again at every seed
of ``tune.confirm.seeds`` (never the trials' own seed), with the same forced rules as a trial (no
test, test split withheld) and no pruning; the point with the best mean over its trial and these
runs is selected. Each run is a normal run directory (``<tune.dir>/confirm/<trial>-seed<s>``) with
its record; a finished one is read back, not re-run, so a killed phase resumes.

The phase costs ``(top_k + 1) x len(seeds)`` training runs on top of the budget; the summary and
``best.yaml`` say it ran (``confirm_seeds``), and ``valid`` / ``default_valid`` are then the means.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig

from slifmr.records import RECORD_FILE, monitored_value, read_finished_record
from slifmr.tune.space import SpaceError

log = logging.getLogger(__name__)

CONFIRM_DIR = "confirm"

# (overrides, run_dir) -> None: trains one run (the search passes its trial runner; tests may stub it)
RunFn = Callable[[list[str], Path], None]


def confirm_settings(cfg: DictConfig) -> tuple[int, list[int]]:
    """(top_k, seeds) of ``tune.confirm``; (0, []) when the phase is off. Bad settings name the key."""
    node = cfg.tune.get("confirm") or {}
    top_k = int(node.get("top_k") or 0)
    seeds = [int(s) for s in (node.get("seeds") or [])]
    if top_k < 0:
        raise SpaceError(f"tune.confirm.top_k must be >= 0, got {top_k}")
    if top_k == 0:
        return 0, []
    if not seeds:
        raise SpaceError("tune.confirm.top_k > 0 needs at least one seed in tune.confirm.seeds")
    if len(set(seeds)) != len(seeds):
        raise SpaceError(f"tune.confirm.seeds repeats a seed: {seeds}")
    if int(cfg.seed) in seeds:
        raise SpaceError(f"tune.confirm.seeds {seeds} includes the trials' own seed ({int(cfg.seed)}): "
                         "a confirmation run must be a new draw, not a copy of the trial")
    return top_k, seeds


def candidates(rows: list[dict[str, Any]], top_k: int, default_params: dict[str, Any] | None,
               sign: float) -> list[dict[str, Any]]:
    """The ``top_k`` best completed, non-repeated trials by value, then the defaults' first completed
    trial if it is not among them. ``rows``: the summary's trials table."""
    done = [r for r in rows if r["state"] == "COMPLETE" and r["duplicate_of"] is None and r["value"] is not None]
    ranked = sorted(done, key=lambda r: (-sign * r["value"], r["number"]))
    picked = ranked[:top_k]
    if default_params is not None and not any(r["params"] == default_params for r in picked):
        default = next((r for r in done if r["params"] == default_params), None)
        if default is not None:
            picked.append(default)
    return picked


def _finished(run_dir: Path, metric: str) -> tuple[float, float] | None:
    """(best-epoch value of ``metric``, the run's seconds) from its record; None if it has no
    finished record."""
    rec = read_finished_record(run_dir)
    if rec is None:
        return None
    value = monitored_value(rec, metric)
    if value is None:
        raise SpaceError(f"{run_dir / RECORD_FILE}: no validation value of {metric} (the search selects on it)")
    return value, float((rec.get("time_s") or {}).get("total") or 0.0)


def run_confirm(rows: list[dict[str, Any]], cfg: DictConfig, out: Path, default_params: dict[str, Any] | None,
                as_overrides: Callable[[dict[str, Any]], list[str]], run: RunFn) -> dict[str, Any] | None:
    """Train each candidate at each confirm seed (or read its finished record); the points' values
    per seed, their means and the selected trial. None when the phase is off or nothing completed."""
    top_k, seeds = confirm_settings(cfg)
    if not top_k:
        return None
    metric = str(cfg.tune.metric)
    sign = 1.0 if cfg.tune.direction == "maximize" else -1.0
    points, seconds = [], 0.0
    for row in candidates(rows, top_k, default_params, sign):
        values = {str(int(cfg.seed)): float(row["value"])}
        for seed in seeds:
            run_dir = out / CONFIRM_DIR / f"{row['number']:03d}-seed{seed}"
            done = _finished(run_dir, metric)
            if done is None:
                log.info("tune: confirm trial %d's point at seed %d: %s", row["number"], seed,
                         " ".join(as_overrides(row["params"])))
                run(as_overrides(row["params"]) + [f"seed={seed}"], run_dir)
                done = _finished(run_dir, metric)
                if done is None:
                    raise RuntimeError(f"tune: the confirmation run {run_dir} wrote no completed record")
            values[str(seed)] = done[0]
            seconds += done[1]
        mean = sum(values.values()) / len(values)
        points.append({"trial": row["number"], "params": row["params"], "values": values, "mean": mean,
                       "is_default": default_params is not None and row["params"] == default_params})
    if not points:
        return None
    winner = max(points, key=lambda p: (sign * p["mean"], -p["trial"]))  # a tie: the earlier trial
    return {"top_k": top_k, "seeds": [int(cfg.seed), *seeds], "points": points, "selected_trial": winner["trial"],
            "runs": len(points) * len(seeds), "seconds": round(seconds, 1)}


def apply_confirm(summary: dict[str, Any], confirm: dict[str, Any]) -> dict[str, Any]:
    """The summary with the confirmed winner as ``best`` and the means as the values the docs and
    ``best.yaml`` read (each one-seed trial value kept as ``value_trial``)."""
    by_trial = {p["trial"]: p for p in confirm["points"]}
    rows = {r["number"]: r for r in summary["trials_table"]}
    win = by_trial[confirm["selected_trial"]]
    row = rows[win["trial"]]
    summary["best"] = {"trial": win["trial"], "value": win["mean"], "value_trial": row["value"],
                       "params": win["params"], "run_dir": row["run_dir"], "best_epoch": row["best_epoch"],
                       "seeds": confirm["seeds"]}
    default = summary.get("default")
    if default is not None:
        point = next((p for p in confirm["points"] if p["is_default"]), None)
        if point is not None:
            default["value_trial"], default["value"] = default["value"], point["mean"]
        else:  # the defaults' trial did not complete: no mean to compare with
            default["value_trial"], default["value"] = default["value"], None
    summary["confirm"] = confirm
    return summary

"""One model's search on one dataset: Optuna TPE over its declared space, selected on validation only.

Every trial is a normal ``slifmr.train`` run (its own run directory and ``record.json``) composed
from the search's own overrides plus the sampled point, with two settings forced: ``test=false``
(no ``trainer.test``) and ``dataset.withhold_test=true`` (the DataModule drops the test split on
load and refuses to build test batches). The objective is the best validation score of the run
(``tune.metric``, by default ``eval.monitor`` = val Recall@20), reported each epoch to a
``MedianPruner`` that stops a trial whose best-so-far is below the median of the earlier trials
at the same epoch (after ``tune.pruner.n_warmup_steps`` epochs, the early-stopping warm-up).

The study lives in SQLite (``<tune.dir>/study.db``, Optuna's RDB storage): run the same command
again and it resumes, counting finished (complete + pruned) trials against ``tune.trials``; a
trial left running by a killed search is marked failed and its point re-queued. One search
process per study directory. With ``tune.confirm.top_k`` > 0 the best points are then re-trained on
more seeds and selected on their mean (``slifmr.tune.confirm``). When it ends it writes ``best.yaml``
(the winner as overrides, a tuned point: ``slifmr.tune.points``) and ``summary.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import time
from collections.abc import Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

from slifmr.config import hydra_parts
from slifmr.records import atomic_write_bytes, atomic_write_json, jsonable
from slifmr.tune.confirm import apply_confirm, confirm_settings, run_confirm
from slifmr.tune.space import Param, SpaceError, as_overrides, check_keys, load_space, space_owner, space_source

log = logging.getLogger(__name__)

STUDY_DB = "study.db"
BEST_FILE = "best.yaml"
SUMMARY_FILE = "summary.json"
# when and for how long the writing session ran: not part of what the search found
SESSION_KEYS = ("session_wall_s", "written")
TRIALS_DIR = "trials"
# Forced on every trial: validation-only selection, the test split never loaded.
FORCED = ("test=false", "dataset.withhold_test=true")
# Overrides of the search command that are the search's own, not the trials'.
_OWN_PREFIXES = ("tune.", "hydra.", "+tune.", "++tune.", "task_name=", "test=", "dataset.withhold_test=")


def trial_base_overrides(task_overrides: list[str]) -> list[str]:
    """The search command's overrides that every trial inherits (model, dataset, paths, ...)."""
    return [o for o in task_overrides if not o.lstrip("~").startswith(_OWN_PREFIXES)]


def _override_key(item: str) -> str:
    return item.lstrip("~+").split("=", 1)[0].strip()


def split_fixed(space: dict[str, Param], base: list[str]) -> tuple[dict[str, Param], list[str]]:
    """A key given on the command line is fixed, not searched: drop it from the space."""
    given = {_override_key(o) for o in base}
    fixed = [k for k in space if k in given]
    return {k: p for k, p in space.items() if k not in given}, fixed


def torch_threads(setting: int | None, workers: int = 1) -> int:
    """Intra-op threads per trial: ``tune.threads``, else ``OMP_NUM_THREADS``, else the CPUs this
    process may use divided among ``tune.workers`` concurrent searches."""
    if setting:
        return int(setting)
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus // max(1, int(workers)))


@contextmanager
def _hydra_context(cfg: DictConfig) -> Iterator[None]:
    """Make ``cfg``'s hydra node the running HydraConfig (records read their overrides there),
    and give the previous one back afterwards. Composes need an initialised GlobalHydra: inside
    ``python -m slifmr.tune`` there is one; a caller without one (tests) gets the package's."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    previous = HydraConfig.instance().cfg
    owned = None
    if not GlobalHydra.instance().is_initialized():
        owned = initialize_config_module(config_module="slifmr.conf", version_base="1.3")
        owned.__enter__()
    try:
        yield
    finally:
        HydraConfig.instance().cfg = previous
        if owned is not None:
            owned.__exit__(None, None, None)


def compose_trial(overrides: list[str], run_dir: Path) -> DictConfig:
    """The composed train config of one trial, its run directory set (as Hydra would)."""
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.overrides.task = list(overrides)
    HydraConfig.instance().set_config(cfg)
    return cfg


def _study_attrs(model: str, dataset: str, space: dict[str, Param], base: list[str], metric: str) -> dict:
    return {"model": model, "dataset": dataset, "metric": metric, "base_overrides": sorted(base),
            "space": {k: p.describe() for k, p in space.items()}}


def _check_same_study(study, attrs: dict, db: Path) -> None:
    """A resumed study must search the same space under the same settings, else trials mix."""
    stored = study.user_attrs
    if not stored:
        for k, v in attrs.items():
            study.set_user_attr(k, v)
        return
    diff = [k for k, v in attrs.items() if json.dumps(stored.get(k), sort_keys=True) != json.dumps(v, sort_keys=True)]
    if diff:
        detail = "; ".join(f"{k}: stored {stored.get(k)!r}, now {attrs[k]!r}" for k in diff)
        raise SpaceError(f"{db} holds a study made with other settings ({detail}); "
                         "resume it with the same command, or point tune.dir elsewhere")


def _requeue_stale(study, storage) -> int:
    """Trials left RUNNING by a killed search: mark them failed and queue their points again."""
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in stale:
        tid = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_state_values(tid, state=TrialState.FAIL)
        if t.params:
            study.enqueue_trial(t.params, skip_if_exists=False)
        log.warning("tune: trial %d was left running by an earlier search: marked failed, its point re-queued",
                    t.number)
    return len(stale)


def default_point(space: dict[str, Param], cfg: DictConfig) -> dict[str, Any]:
    """The composed config's own values of the searched keys, where the space contains them:
    queued as trial 0, so the search measures the defaults under the same rules as every point."""
    point = {}
    for key, p in space.items():
        value = OmegaConf.select(cfg, key, default=None)
        if p.choices is not None:
            match = [c for c in p.choices if c == value or (isinstance(c, str) and c.replace(" ", "") == str(value)
                                                             .replace(" ", ""))]
            if match:
                point[key] = match[0]
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and p.low <= value <= p.high:
            point[key] = value
    return point


def _finished(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def _duplicate_of(study, number: int, params: dict[str, Any]):
    """An earlier finished trial with exactly these params (TPE may resample a small grid)."""
    for t in _finished(study):
        if t.number != number and t.params == params:
            return t
    return None


def make_runner(cfg: DictConfig, base: list[str]):
    """``run(point, run_dir, callbacks=())``: one normal training run of a point, as every trial and
    confirmation run is made: ``base`` (the search command's trial overrides), ``tune.trial_overrides``,
    the point's overrides, then the forced rules (no test, test split withheld)."""
    from slifmr.train import train

    extra = [str(o) for o in cfg.tune.get("trial_overrides") or []]

    def run(point: list[str], run_dir: Path, callbacks: Sequence[Any] = ()) -> None:
        with _hydra_context(cfg):
            train(compose_trial(base + extra + point + list(FORCED), run_dir), extra_callbacks=callbacks)

    return run


def without_seed(base: list[str]) -> list[str]:
    """``base`` less its ``seed=``: a confirmation run's point overrides carry its own seed."""
    return [o for o in base if _override_key(o) != "seed"]


def make_objective(study, cfg: DictConfig, space: dict[str, Param], base: list[str], out: Path):
    """The Optuna objective: one normal training run per trial, pruned through the Trainer."""
    import optuna

    from slifmr.callbacks.trial_pruning import TrialPruningCallback

    metric = str(cfg.tune.metric)
    sign = 1.0 if cfg.tune.direction == "maximize" else -1.0
    run = make_runner(cfg, base)

    def objective(trial) -> float:
        params = {k: p.suggest(trial) for k, p in space.items()}
        dup = _duplicate_of(study, trial.number, params)
        if dup is not None:  # no second run of the same point: same value, costs no training
            trial.set_user_attr("duplicate_of", dup.number)
            log.info("tune: trial %d repeats trial %d's point; not re-run", trial.number, dup.number)
            if dup.value is None:
                raise optuna.TrialPruned()
            return float(dup.value)
        run_dir = out / TRIALS_DIR / f"{trial.number:03d}"
        trial.set_user_attr("run_dir", str(run_dir))
        pruning = TrialPruningCallback(trial, monitor=metric)
        log.info("tune: trial %d: %s", trial.number, " ".join(as_overrides(params)))
        run(as_overrides(params), run_dir, [pruning])
        if not pruning.reported:
            raise RuntimeError(f"tune: trial {trial.number} validated no epoch ({run_dir})")
        best = max(pruning.reported.values(), key=lambda v: sign * v if v == v else -math.inf)
        trial.set_user_attr("epochs", len(pruning.reported))
        trial.set_user_attr("best_epoch", max(pruning.reported, key=lambda e: (sign * pruning.reported[e], -e)))
        if pruning.pruned_epoch is not None:
            trial.set_user_attr("pruned_epoch", pruning.pruned_epoch)
            raise optuna.TrialPruned(f"pruned after epoch {pruning.pruned_epoch}")
        return float(best)

    return objective


def summarize(study, cfg: DictConfig, command: str, session_seconds: float, fixed: list[str]) -> dict[str, Any]:
    """Counts, the winner, time spent and the epochs the pruner saved, from the stored study."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    rows, durations = [], []
    for t in trials:
        dur = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
        if dur is not None and t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            durations.append(dur)
        rows.append({"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                     "epochs": t.user_attrs.get("epochs"), "best_epoch": t.user_attrs.get("best_epoch"),
                     "pruned_epoch": t.user_attrs.get("pruned_epoch"),
                     "duplicate_of": t.user_attrs.get("duplicate_of"), "seconds": dur,
                     "run_dir": t.user_attrs.get("run_dir")})
    trained = [r for r in rows if r["duplicate_of"] is None and r["epochs"] is not None]
    complete = [r for r in trained if r["state"] == "COMPLETE"]
    pruned = [r for r in trained if r["state"] == "PRUNED"]
    median_epochs = statistics.median(r["epochs"] for r in complete) if complete else None
    saved = None if median_epochs is None else sum(max(0.0, median_epochs - r["epochs"]) for r in pruned)
    best = None
    try:
        bt = study.best_trial
        best = {"trial": bt.number, "value": bt.value, "params": bt.params,
                "run_dir": bt.user_attrs.get("run_dir"), "best_epoch": bt.user_attrs.get("best_epoch")}
    except ValueError:  # no complete trial yet
        pass
    by_state = {s: sum(r["state"] == s for r in rows) for s in ("COMPLETE", "PRUNED", "FAIL")}
    attrs = study.user_attrs
    default = None
    if "default_point" in attrs and rows:
        # trial 0 is the defaults; if it was killed, its point was re-queued: the first finished run of it
        runs = [r for r in rows if r["params"] == attrs["default_point"] and r["state"] in ("COMPLETE", "PRUNED")]
        first = runs[0] if runs else rows[0]
        default = {"trial": first["number"], "params": first["params"], "state": first["state"],
                   "value": first["value"], "is_model_default": first["params"] == attrs["default_point"]}
    return {
        "model": attrs.get("model"), "dataset": attrs.get("dataset"), "metric": attrs.get("metric"),
        "direction": str(cfg.tune.direction), "budget": int(cfg.tune.trials),
        "trials": by_state["COMPLETE"] + by_state["PRUNED"], "completed": by_state["COMPLETE"],
        "pruned": by_state["PRUNED"], "failed": by_state["FAIL"],
        "duplicates": sum(r["duplicate_of"] is not None for r in rows),
        "best": best,
        "default": default,
        "fixed_on_command_line": fixed,
        "space": attrs.get("space"), "base_overrides": attrs.get("base_overrides"),
        "sampler": {"name": "TPESampler", "seed": int(cfg.tune.seed),
                    "n_startup_trials": int(cfg.tune.sampler.n_startup_trials)},
        "pruner": {"name": "MedianPruner", **OmegaConf.to_container(cfg.tune.pruner, resolve=True)},
        "epochs_run": sum(r["epochs"] for r in trained),
        "epochs_run_by_pruned": sum(r["epochs"] for r in pruned),
        "epochs_saved_by_pruning": saved,
        "epochs_saved_rule": "sum over pruned trials of (median epochs of the completed trials - epochs it ran), "
                             "at least 0: what those trials would have cost had they run like a typical one",
        "trial_seconds": round(sum(durations), 1),
        "session_wall_s": round(session_seconds, 1),
        "command": command,
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "trials_table": rows,
    }


def unchanged_summary(path: Path, summary: dict[str, Any]) -> dict[str, Any] | None:
    """The summary on disk, when it says all that ``summary`` says but for :data:`SESSION_KEYS`.

    Resuming a finished search runs nothing; rewriting its summary would replace the wall time of
    the session that ran the trials with this one's (under a second), so the file is left alone.
    """
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # unreadable: the caller rewrites it
    new = json.loads(json.dumps(jsonable(summary)))
    same = isinstance(old, dict) and all(old.get(k) == new.get(k) for k in set(old) | set(new) if k not in SESSION_KEYS)
    return old if same else None


def best_point_yaml(summary: dict[str, Any]) -> str:
    """``best.yaml``: the winner as a tuned point (overrides + where they came from)."""
    best = summary["best"]
    point = {
        "model": summary["model"], "dataset": summary["dataset"], "monitor": summary["metric"],
        "valid": best["value"], "trials": summary["trials"], "completed": summary["completed"],
        "pruned": summary["pruned"], "trial": best["trial"], "seed": summary["sampler"]["seed"],
        "default_valid": (summary.get("default") or {}).get("value"),
        "confirm_seeds": (summary.get("confirm") or {}).get("seeds"),
        "command": summary["command"], "overrides": best["params"],
    }
    confirmed = summary.get("confirm")
    how = (f", confirmed: mean over seeds {confirmed['seeds']} of the {len(confirmed['points'])} best points"
           if confirmed else "")
    head = (f"# Tuned point of {summary['model']} on {summary['dataset']}: the best of {summary['trials']} trials "
            f"by {summary['metric']}{how} (validation only; the test split was withheld).\n"
            f"# Written by: {summary['command']}\n")
    return head + yaml.safe_dump(point, sort_keys=False)


def run_search(cfg: DictConfig, task_overrides: list[str]) -> dict[str, Any]:
    """Run (or resume) the search the composed tune config describes; returns its summary."""
    import optuna
    import torch

    started = time.perf_counter()
    _, choices = hydra_parts(cfg)
    model = choices.get("model") or str(cfg.model._target_).rsplit(".", 1)[-1].lower()
    dataset = str(cfg.dataset.name)
    metric = str(cfg.tune.metric)
    if not metric.startswith("val/"):
        raise SpaceError(f"tune.metric must be a validation metric (val/...), got '{metric}': "
                         "selection never looks at the test split")
    space = load_space(model)
    check_keys(space, cfg, space_source(space_owner(model) or model))
    base = trial_base_overrides(task_overrides)
    space, fixed = split_fixed(space, base)
    if fixed:
        log.info("tune: fixed on the command line, not searched: %s", ", ".join(fixed))
    if not space:
        raise SpaceError(f"{space_source(model)}: every key is fixed on the command line; nothing to search")
    out = Path(str(cfg.tune.dir)).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    db = out / STUDY_DB
    if db.exists() and not cfg.tune.resume:
        raise SpaceError(f"{db} exists and tune.resume=false: resume it (tune.resume=true) or set tune.dir")
    confirm_settings(cfg)  # bad confirmation settings fail before any trial
    threads = torch_threads(cfg.tune.get("threads"), cfg.tune.get("workers", 1))
    torch.set_num_threads(threads)

    storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    name = f"{model}@{dataset}"
    probe = optuna.load_study(study_name=name, storage=storage) if name in optuna.get_all_study_names(storage) else None
    n_before = len(_finished(probe)) if probe is not None else 0
    sampler = optuna.samplers.TPESampler(seed=int(cfg.tune.seed) + n_before,  # a resumed search stays seeded
                                         n_startup_trials=int(cfg.tune.sampler.n_startup_trials))
    pruner = optuna.pruners.MedianPruner(**OmegaConf.to_container(cfg.tune.pruner, resolve=True))
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction=str(cfg.tune.direction),
                                sampler=sampler, pruner=pruner)
    _check_same_study(study, _study_attrs(model, dataset, space, base, metric), db)
    _requeue_stale(study, storage)
    if cfg.tune.get("include_default", True) and not study.trials:
        default = default_point(space, cfg)
        study.set_user_attr("default_point", default)
        study.enqueue_trial(default)  # trial 0; keys whose default lies outside the space are sampled
    todo = int(cfg.tune.trials) - len(_finished(study))
    command = "python -m slifmr.tune " + " ".join(task_overrides)
    log.info("tune: %s on %s, %d of %d trials done, %d to run, %d thread(s) each, study %s",
             model, dataset, len(_finished(study)), int(cfg.tune.trials), max(todo, 0), threads, db)
    if todo > 0:
        objective = make_objective(study, cfg, space, base, out)
        timeout = cfg.tune.get("timeout_s")
        study.optimize(objective, n_trials=todo, timeout=float(timeout) if timeout else None, catch=())
    summary = summarize(study, cfg, command, time.perf_counter() - started, fixed)
    confirm = run_confirm(summary["trials_table"], cfg, out, study.user_attrs.get("default_point"), as_overrides,
                          make_runner(cfg, without_seed(base)))
    if confirm is not None:
        summary = apply_confirm(summary, confirm)
        summary["session_wall_s"] = round(time.perf_counter() - started, 1)
    kept = unchanged_summary(out / SUMMARY_FILE, summary)
    if kept is not None:  # a finished search resumed: nothing ran, the summary keeps its session's time
        log.info("tune: nothing new since %s; %s left as written", kept.get("written"), SUMMARY_FILE)
        summary = kept
    else:
        atomic_write_json(out / SUMMARY_FILE, summary)
    if summary["best"] is not None:
        atomic_write_bytes(out / BEST_FILE, best_point_yaml(summary).encode())
    else:
        log.warning("tune: no trial completed, so no %s was written", BEST_FILE)
    return summary

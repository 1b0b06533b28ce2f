"""OmegaConf resolvers used by conf/ (registered once, before Hydra composes)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from slifmr.datasets import embedded_path


def _hydra_config():
    """The running job's HydraConfig, or None outside a Hydra job (tests, notebooks)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def sweep_group(name: str | None = None) -> str | None:
    """The W&B group of a job: ``sweep_name`` when set, else the multirun directory's name
    (so a sweep's runs land together), else None (a single run has no group)."""
    if name:
        return str(name)
    hc = _hydra_config()
    mode = hc.get("mode") if hc is not None else None
    if getattr(mode, "name", str(mode)) != "MULTIRUN":
        return None
    return Path(str(hc.sweep.dir)).name or None


# overrides that say where or how a run is logged or shown, not what it computes: no part of its name
NAME_EXCLUDES = ("paths.", "hydra.", "hydra/", "logger", "callbacks.progress_bar", "trainer.enable_progress_bar",
                 "dry_run", "sweep")


def name_from_overrides(overrides: list[str]) -> str | None:
    """``key=value,...`` of the overrides that change what a run computes (no paths, no logger keys)."""
    kept = []
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if not key.startswith(NAME_EXCLUDES):
            kept.append(o.lstrip("+"))
    return ",".join(sorted(kept)) or None


def run_name() -> str | None:
    """The W&B name of a job: the command-line overrides that change what it computes, or None
    (W&B picks a name) outside Hydra or without such overrides."""
    hc = _hydra_config()
    return name_from_overrides(list(hc.overrides.task)) if hc is not None else None


def path_safe(name: str) -> str:
    """A job's override string as one directory name: ``/`` (a path in an override, e.g.
    ``tuned.path=outputs/tune``) becomes ``%2F`` so the job does not nest one level per slash."""
    return str(name).replace("%", "%25").replace("/", "%2F")


def first(value, default):
    """``value`` unless it is null or empty, else ``default`` (the run dir: ``resume`` or a new one)."""
    return default if value in (None, "") else value


def hydra_parts(cfg) -> tuple[list[str], dict[str, Any]]:
    """(task overrides, group choices) from the running HydraConfig, else from a composed
    config's ``hydra`` node (tests compose with it), else nothing."""
    from hydra.core.hydra_config import HydraConfig

    node = HydraConfig.get() if HydraConfig.initialized() else cfg.get("hydra") if "hydra" in cfg else None
    if node is None:
        return [], {}
    overrides = list(OmegaConf.to_container(node.overrides.task)) if node.get("overrides") else []
    choices = node.runtime.get("choices") if node.get("runtime") else None
    return [str(o) for o in overrides], dict(OmegaConf.to_container(choices)) if choices else {}


def plain_config(cfg) -> dict:
    """The composed config as plain, resolved containers without Hydra's runtime-only node: what
    loggers, checkpoints and result records store."""
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)


def cache_dir(data_dir: str) -> str:
    """``paths.cache_dir``: ``$SLIFMR_CACHE_DIR``, else ``<parent of paths.data_dir>/.cache/slifmr``.

    The cache holds datasets derived from the data, so it sits beside the data directory (absolute,
    whatever directory a run is launched from), never inside the package: the embedded dataset
    lives in the package, which may be installed read-only and must not carry run artefacts.
    """
    env = os.environ.get("SLIFMR_CACHE_DIR")
    if env:
        return str(Path(env).expanduser())
    return str(Path(str(data_dir)).expanduser().resolve().parent / ".cache" / "slifmr")


def upgrade_config(cfg: DictConfig) -> DictConfig:
    """A copy of a run config in today's layout, for runs recorded before SLIF-MR's knobs moved under
    its model (issue 11): the top-level ``consistency`` / ``self_loop`` blocks go into ``model`` (SLIF-MR)
    or away, ``dataset.knn_k`` / ``dataset.prune_ratio`` become ``model.knn_k`` / the ratio of a
    null ``model.prune_ratio``, the self-loop callback keeps only its own ``chunk_size``; an old
    ``self_loop`` block without ``a_block`` (before issue 14) gets ``normalized``, the one way its
    run placed G^n. A config already in today's layout comes back equal."""
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        model = cfg.get("model")
        slif = model is not None and str(model.get("_target_", "")).endswith(".SLIFMR")
        for key in ("consistency", "self_loop"):
            if key not in cfg:
                continue
            block = OmegaConf.to_container(cfg[key], resolve=False)
            del cfg[key]
            if key == "self_loop" and "a_block" not in block:
                block["a_block"] = "normalized"  # before issue 14 G^n entered A^n / S^n only this way
            if slif and (key not in model or OmegaConf.is_interpolation(model, key)):
                model[key] = block
        dataset = cfg.get("dataset")
        if dataset is not None:
            knn_k, ratio = dataset.pop("knn_k", None), dataset.pop("prune_ratio", None)
            if slif and knn_k is not None and "knn_k" not in model:
                model.knn_k = knn_k
            if slif and "prune_ratio" in model and model.prune_ratio is None:
                model.prune_ratio = ratio or 0.0
        callback = (cfg.get("callbacks") or {}).get("self_loop")
        if callback is not None:
            for key in [k for k in callback if k not in ("_target_", "chunk_size")]:
                del callback[key]
    return cfg


# SLIF-MR's constructor arguments that a run before issue 11 set outside the model
MOVED_MODEL_KEYS = ("knn_k", "consistency", "self_loop")


def upgrade_hparams(hparams: dict[str, Any], config: DictConfig | dict | None) -> dict[str, Any]:
    """A checkpoint's model hyper-parameters as its run used them, for today's constructors.

    Before issue 11 SLIF-MR's ``prune_ratio: null`` meant "the data module's ``prune_ratio``"
    (``GraphStore.interaction_adj(ratio=None)``; 0.0 unless ``dataset.prune_ratio`` was set, the
    default of every data module and dataset config then), and its kNN k and self-loop settings
    lived outside the model; today ``prune_ratio`` must be a number in [0, 1). ``config``: the
    run's composed config in any layout (the checkpoint's stored copy, else the run directory's);
    null becomes its ``model.prune_ratio`` after :func:`upgrade_config`, 0.0 without one, and the
    moved keys the checkpoint lacks are taken from it. Pruning is training-only, so the ratio
    changes nothing a loaded model computes in evaluation; it matters to a resumed run."""
    hp = dict(hparams)
    model: dict[str, Any] = {}
    if config:
        node = upgrade_config(OmegaConf.create(config)).get("model")
        model = OmegaConf.to_container(node, resolve=True) if node is not None else {}
    if "prune_ratio" in hp and hp["prune_ratio"] is None:
        ratio = model.get("prune_ratio")
        hp["prune_ratio"] = 0.0 if ratio is None else ratio
    if str(model.get("_target_", "")).endswith(".SLIFMR"):
        for key in MOVED_MODEL_KEYS:
            if key not in hp and key in model:
                hp[key] = model[key]
    return hp


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("slifmr.cache_dir"):
        OmegaConf.register_new_resolver("slifmr.cache_dir", cache_dir)
    if not OmegaConf.has_resolver("slifmr.first"):
        OmegaConf.register_new_resolver("slifmr.first", first)
    if not OmegaConf.has_resolver("slifmr.path_safe"):
        OmegaConf.register_new_resolver("slifmr.path_safe", path_safe)
    if not OmegaConf.has_resolver("slifmr.embedded"):
        OmegaConf.register_new_resolver("slifmr.embedded", embedded_path)
    if not OmegaConf.has_resolver("slifmr.sweep_group"):
        OmegaConf.register_new_resolver("slifmr.sweep_group", sweep_group)
    if not OmegaConf.has_resolver("slifmr.hydra_subdir"):
        from slifmr.hydra_callbacks import hydra_subdir

        OmegaConf.register_new_resolver("slifmr.hydra_subdir", hydra_subdir)
    if not OmegaConf.has_resolver("slifmr.run_name"):
        OmegaConf.register_new_resolver("slifmr.run_name", run_name)

"""Tuned points: run a model at the point its search selected (``tuned=<set>`` on any train command).

A *point* is what ``slifmr.tune`` writes to ``best.yaml``: the winning overrides plus where they
came from (validation score, trials, pruned, the command). A *tuned set* is the config group
``tuned`` (``conf/tuned/<set>.yaml``), which holds points per dataset and model::

    name: cpu12
    points:
      ml-100k-kg:
        lightgcn: {valid: 0.34, trials: 12, ..., overrides: {model.lr: 0.01, model.n_layers: 3}}

or a search output root to read them from (``tuned=dir tuned.path=outputs/tune``:
``<path>/<dataset>/<model>/best.yaml``). :func:`apply_tuned` picks the job's point, so one
multirun (``python -m slifmr.train -m +sweep=table2 tuned=cpu12``) trains every model at its own
point. It replaces ``cfg.tuned`` by the applied point, which the run's record keeps; the report
reads it (tuned or default, budget, validation score). A key given on the command line wins
over the point (it is listed as kept). A model with a search space but no point is an error; a
model without a space (Pop) runs at its defaults and says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

from slifmr.config import hydra_parts
from slifmr.tune.space import has_space, hydra_value

_MISSING = object()
POINT_FIELDS = ("valid", "default_valid", "monitor", "trials", "completed", "pruned", "trial", "seed", "confirm_seeds",
                "command")


class TunedError(ValueError):
    """A tuned set that lacks the job's point, or a point that does not fit the config."""


def _override_key(item: str) -> str:
    return item.lstrip("~+").split("=", 1)[0].strip()


def parse_value(key: str, value: Any) -> Any:
    """A point's value as the trial's Hydra override read it ('[64,64]' -> [64, 64], 1e-05 -> 1e-05)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_override(f"{key}={hydra_value(value)}").value()


def read_point_file(path: Path) -> dict[str, Any] | None:
    """A ``best.yaml`` (None if absent); a malformed one is an error naming the file."""
    if not path.is_file():
        return None
    try:
        point = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise TunedError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(point, dict):
        raise TunedError(f"{path}: a tuned point is a mapping with 'overrides', got {type(point).__name__}")
    return point


def find_point(node: DictConfig, dataset: str, model: str) -> tuple[dict[str, Any] | None, str]:
    """(the point of ``model`` on ``dataset`` in the tuned set ``node``, where it was found)."""
    name = node.get("name", "?")
    if node.get("path"):
        path = Path(str(node.path)).expanduser() / dataset / model / "best.yaml"
        return read_point_file(path), str(path)
    points = node.get("points") or {}
    point = OmegaConf.select(points, f"{dataset}.{model}", default=None) if dataset in points else None
    where = f"conf/tuned/{name}.yaml: points.{dataset}.{model}"
    return (OmegaConf.to_container(point, resolve=True) if point is not None else None), where


def apply_tuned(cfg: DictConfig) -> DictConfig:
    """Apply the job's tuned point to ``cfg`` in place (no-op without ``tuned``); returns ``cfg``."""
    node = cfg.get("tuned")
    if node is None or node.get("status") is not None:  # nothing selected, or applied already
        return cfg
    overrides, choices = hydra_parts(cfg)
    model = choices.get("model") or str(cfg.model.get("_target_", "")).rsplit(".", 1)[-1].lower()
    dataset = str(cfg.dataset.name)
    name = str(node.get("name") or "?")
    point, where = find_point(node, dataset, model)
    if point is None:
        if has_space(model):
            raise TunedError(
                f"tuned={name} has no point for model '{model}' on dataset '{dataset}' ({where} not found). "
                f"Tune it first: python -m slifmr.tune model={model} dataset={dataset} tune.trials=<n>")
        applied: dict[str, Any] = {"name": name, "status": "default", "model": model, "dataset": dataset,
                                   "reason": f"model '{model}' has no search space: nothing to tune"}
    else:
        values = point.get("overrides")
        if not isinstance(values, dict) or not values:
            raise TunedError(f"{where}: a tuned point needs a non-empty 'overrides' mapping")
        for field in ("model", "dataset"):
            if point.get(field) not in (None, {"model": model, "dataset": dataset}[field]):
                raise TunedError(f"{where}: the point was tuned for {field} '{point[field]}', "
                                 f"not '{ {'model': model, 'dataset': dataset}[field] }'")
        explicit = {_override_key(o) for o in overrides}
        kept = sorted(k for k in values if k in explicit)
        for key, value in values.items():
            if OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False) is _MISSING:
                raise TunedError(f"{where}: key '{key}' is not in the composed config of model '{model}' "
                                 "(it moved or was misspelt; re-tune or edit the point)")
            if key not in kept:
                OmegaConf.update(cfg, key, parse_value(key, value), merge=False)
        applied = {"name": name, "status": "tuned", "model": model, "dataset": dataset, "source": where,
                   **{f: point.get(f) for f in POINT_FIELDS}, "overrides": dict(values),
                   "kept_from_command_line": kept}
    with open_dict(cfg):
        cfg.tuned = applied
    return cfg

"""A model's search space: ``conf/tune/<model>.yaml``, read here (Hydra never composes it).

The file maps config paths of the composed train config (``model.lr``, ``model.consistency.beta``) to
Optuna distributions::

    model.lr: [1.0e-4, 1.0e-3, 1.0e-2]         # a list: categorical (the paper's grids)
    model.n_layers: {low: 1, high: 5}          # ints: an integer range (step 1, or step: k)
    model.reg_weight: {low: 1.0e-6, high: 1.0e-2, log: true}   # floats: a float range

A sampled point is a set of Hydra overrides (``model.lr=0.01``), so a trial is a normal
``slifmr.train`` run and its record lists exactly what it tried. Every key must exist in the
composed config of its model (:func:`check_keys`): a key that moved can never be silently ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

SPACE_GROUP = "tune"  # conf/tune/<model>.yaml
_MISSING = object()


class SpaceError(ValueError):
    """A search space that is missing, malformed or names keys its model does not have."""


@dataclass(frozen=True)
class Param:
    """One searched config key and its distribution."""

    key: str
    choices: tuple[Any, ...] | None = None  # categorical
    low: float | int | None = None  # int or float range
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None

    @property
    def kind(self) -> str:
        if self.choices is not None:
            return "categorical"
        return "int" if isinstance(self.low, int) and isinstance(self.high, int) else "float"

    def suggest(self, trial: Any) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)

    def describe(self) -> Any:
        """Plain data for the study's attributes and the summary (a changed space is detected)."""
        if self.kind == "categorical":
            return list(self.choices)
        return {"low": self.low, "high": self.high, "log": self.log, "step": self.step}


def _space_dir():
    return resources.files("slifmr.conf").joinpath(SPACE_GROUP)


def space_source(model: str) -> str:
    return f"conf/{SPACE_GROUP}/{model}.yaml"


def models_with_spaces() -> list[str]:
    """Every model that declares a search space, sorted."""
    return sorted(p.name[: -len(".yaml")] for p in _space_dir().iterdir() if p.name.endswith(".yaml"))


def _parent_model(model: str) -> str | None:
    """The model config a preset extends (``defaults: [slifmr]`` in conf/model/slifmr_paper.yaml), or None."""
    path = resources.files("slifmr.conf").joinpath("model", f"{model}.yaml")
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for entry in data.get("defaults") or []:
        if isinstance(entry, str) and entry != "_self_" and entry != model:
            return entry
    return None


def space_owner(model: str) -> str | None:
    """The model whose conf/tune file serves ``model``: its own, else that of the config it extends
    (a preset such as slifmr_paper searches its base model's space), else None."""
    seen = set()
    while model and model not in seen:
        if _space_dir().joinpath(f"{model}.yaml").is_file():
            return model
        seen.add(model)
        model = _parent_model(model)
    return None


def has_space(model: str) -> bool:
    return space_owner(model) is not None


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def parse_param(key: str, spec: Any, source: str) -> Param:
    """One entry of a space file -> Param, or a SpaceError naming the file and the key."""
    where = f"{source}: '{key}'"
    if not isinstance(key, str) or not key or key.startswith(("+", "~", "hydra.")):
        raise SpaceError(f"{where}: a key must be a plain config path such as model.lr")
    if isinstance(spec, list):
        if not spec:
            raise SpaceError(f"{where}: an empty list of choices")
        for c in spec:
            if not (c is None or isinstance(c, (bool, int, float, str))):
                raise SpaceError(f"{where}: choice {c!r} is not a number, string, bool or null "
                                 "(write a list value as a string, e.g. '[64,64]')")
        if len({repr(c) for c in spec}) != len(spec):
            raise SpaceError(f"{where}: repeated choices {spec}")
        return Param(key, choices=tuple(spec))
    if isinstance(spec, dict):
        unknown = set(spec) - {"low", "high", "log", "step"}
        if unknown or not {"low", "high"} <= set(spec):
            raise SpaceError(f"{where}: a range is {{low, high[, log, step]}}, got keys {sorted(spec)}")
        low, high, log, step = spec["low"], spec["high"], bool(spec.get("log", False)), spec.get("step")
        if not (_is_number(low) and _is_number(high)) or low >= high:
            raise SpaceError(f"{where}: need numbers low < high, got low={low!r} high={high!r}")
        if log and low <= 0:
            raise SpaceError(f"{where}: a log range needs low > 0, got {low!r}")
        if step is not None and (not _is_number(step) or step <= 0 or log):
            raise SpaceError(f"{where}: step must be a positive number and not combined with log, got {step!r}")
        return Param(key, low=low, high=high, log=log, step=step)
    raise SpaceError(f"{where}: expected a list of choices or {{low, high}}, got {type(spec).__name__} {spec!r}")


def parse_space(data: Any, source: str) -> dict[str, Param]:
    if not isinstance(data, dict) or not data:
        raise SpaceError(f"{source}: a search space is a non-empty mapping of config paths to "
                         f"distributions, got {type(data).__name__}")
    return {str(k): parse_param(k, v, source) for k, v in data.items()}


def load_space(model: str) -> dict[str, Param]:
    """The declared search space of ``model`` (``conf/tune/<model>.yaml``, or its base model's)."""
    owner = space_owner(model)
    source = space_source(owner or model)
    path = _space_dir().joinpath(f"{owner or model}.yaml")
    if owner is None:
        have = ", ".join(models_with_spaces()) or "none"
        raise SpaceError(
            f"model '{model}' declares no search space: {source} does not exist (models with one: {have}). "
            "Write it next to conf/model/<model>.yaml: config paths -> a list of choices or {low, high}.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise SpaceError(f"{source}: not valid YAML: {e}") from e
    return parse_space(data, source)


def check_keys(space: dict[str, Param], cfg: DictConfig, source: str) -> None:
    """Every key of the space exists in the composed config ``cfg``, else a SpaceError listing them."""
    missing = [k for k in space if OmegaConf.select(cfg, k, default=_MISSING, throw_on_missing=False) is _MISSING]
    if missing:
        raise SpaceError(f"{source}: {', '.join(missing)} not in the composed config of this model "
                         "(a key that moved or was misspelt would be silently ignored)")


def hydra_value(value: Any) -> str:
    """A sampled value as the right-hand side of a Hydra override."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # 0.0001, 1e-05: Hydra reads both as floats
    return str(value)


def as_overrides(params: dict[str, Any]) -> list[str]:
    return [f"{k}={hydra_value(v)}" for k, v in params.items()]

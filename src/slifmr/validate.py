"""Config values checked against the constructor that reads them, before anything is built.

``model.L=abc`` would otherwise reach ``range("abc")`` deep inside a layer and fail with a
TypeError that names no key. The constructors' type hints already say what each key takes,
so one generic check covers every ``_target_``; range checks stay in the constructors.
"""

from __future__ import annotations

import inspect
import numbers
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from slifmr.errors import DataError


def _accepts(hint: Any, value: Any) -> bool:
    """Whether ``value`` fits ``hint`` (plain types, Optional/unions, Sequence/list/tuple/dict of them)."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(h, value) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin is not None and isinstance(origin, type):
        if issubclass(origin, Mapping):
            return isinstance(value, Mapping)
        if issubclass(origin, Sequence) and not issubclass(origin, str):
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                return False
            args = typing.get_args(hint)
            elem = args[0] if args and (origin is not tuple or (len(args) == 2 and args[1] is Ellipsis)) else Any
            return all(_accepts(elem, v) for v in value)
        return isinstance(value, origin)
    if isinstance(hint, type):
        if hint in (dict,):
            return isinstance(value, Mapping)
        if hint in (list, tuple):
            return isinstance(value, Sequence) and not isinstance(value, (str, bytes))
        return True  # other classes (tensors, modules...) are not config values
    return True


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def check_node(node: DictConfig | Mapping | None, key: str) -> None:
    """Check each value of a ``_target_`` node against its constructor's type hints; a
    :class:`DataError` naming ``key.field``, the expected type and the value otherwise."""
    if node is None or "_target_" not in node:
        return
    try:
        target = hydra.utils.get_object(str(node["_target_"]))
    except Exception:  # noqa: BLE001 - instantiate reports a bad target itself
        return
    fn = target.__init__ if isinstance(target, type) else target
    try:
        hints = typing.get_type_hints(fn)
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError, NameError):
        return
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    for field, value in values.items():
        if field.startswith("_") or field not in params or field not in hints:
            continue
        if not _accepts(hints[field], value):
            raise DataError(f"{key}.{field} must be {_name(hints[field])}, got {value!r} ({type(value).__name__})")


def check_config(cfg: DictConfig, groups: Sequence[str] = ("dataset", "model", "callbacks")) -> None:
    """Type-check the ``_target_`` nodes of ``groups`` (a group of several, like callbacks, per member)."""
    for group in groups:
        node = cfg.get(group)
        if node is None:
            continue
        if "_target_" in node:
            check_node(node, group)
        else:
            for name, sub in node.items():
                if isinstance(sub, (DictConfig, Mapping)):
                    check_node(sub, f"{group}.{name}")


def check_eval(topk: Sequence[int], monitor: str | None, n_items: int, val_keys: Sequence[str] | None) -> None:
    """At setup, not after the first epoch: every K ranks at most the catalogue, and the monitored
    metric is one validation logs."""
    topk = [int(k) for k in topk]
    if not topk or min(topk) < 1:
        raise DataError(f"eval.topk must be positive cut-offs, got {topk}")
    if max(topk) > n_items:
        raise DataError(f"eval.topk has K={max(topk)}, but the dataset has only {n_items} items to rank")
    if val_keys is not None and monitor and not str(monitor).startswith("train/") and monitor not in val_keys:
        raise DataError(f"eval.monitor '{monitor}' is never logged; validation logs {sorted(val_keys)} "
                        "(K from eval.topk)")

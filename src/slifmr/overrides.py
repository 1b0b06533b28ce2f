"""A misspelt override gets a "did you mean" instead of Hydra's ``+key`` hint.

Hydra answers ``model.n_layerz=2`` with "To append to your config use +model.n_layerz=2", which
only moves the error to the model's constructor. When a command fails, :func:`key_hints`
re-reads its overrides, finds the keys the composed config does not have and names the
closest existing ones.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf


def _all_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    out = []
    for k, v in cfg.items_ex(resolve=False) if hasattr(cfg, "items_ex") else cfg.items():
        full = f"{prefix}{k}"
        out.append(full)
        if isinstance(v, DictConfig):
            out.extend(_all_keys(v, full + "."))
    return out


def _target_takes(cfg: DictConfig, node: str, name: str) -> str | None:
    """The class named by ``node``'s ``_target_`` when its constructor takes ``name``, else None."""
    import inspect

    from hydra.utils import get_method

    target = OmegaConf.select(cfg, f"{node}._target_", default=None)
    if not target:
        return None
    try:
        params = inspect.signature(get_method(str(target))).parameters
    except Exception:  # noqa: BLE001 -- not importable here: say nothing
        return None
    return str(target) if name in params else None


def _groups() -> set[str]:
    """The config groups (directories of the config package), e.g. model, dataset, hydra/launcher."""
    from importlib import resources

    root = resources.files("slifmr.conf")
    out = set()
    for d in root.iterdir():
        if d.is_dir() and not d.name.startswith("_"):
            out.add(d.name)
            out.update(f"{d.name}/{s.name}" for s in d.iterdir() if s.is_dir() and not s.name.startswith("_"))
    return out


def key_hints(argv: list[str], config_name: str = "train") -> list[str]:
    """One line per override whose key the config lacks: the closest keys that exist, and how
    to list a node's keys. Group choices on the command line are honoured (the first value of
    a sweep); anything that cannot be composed is left to Hydra's own message."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    try:
        overrides = parser.parse_overrides([a for a in argv if "=" in a and not a.startswith("-")])
    except Exception:  # noqa: BLE001 -- a syntax error is Hydra's to report
        return []
    groups, keys, group_names = [], [], _groups()
    for o in overrides:
        key = o.key_or_group
        if key.startswith("hydra") or o.is_delete():
            continue
        value = next(iter(o.sweep_string_iterator())) if o.is_sweep_override() else o.get_value_element_as_str()
        if key in group_names:
            groups.append(f"{'+' if o.is_add() else ''}{key}={value}")
        elif not o.is_add():
            keys.append(key)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="slifmr.conf", version_base="1.3"):
            try:
                cfg = compose(config_name=config_name, overrides=groups)
            except Exception:  # noqa: BLE001 -- e.g. a misspelt group: Hydra lists the choices
                return []
    finally:
        GlobalHydra.instance().clear()
    known = _all_keys(cfg)
    hints = []
    for key in keys:
        if key in known or OmegaConf.select(cfg, key, default="__absent__") != "__absent__":
            continue
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        siblings = [k for k in known if k.rsplit(".", 1)[0] == parent and "." in k] if parent else \
            [k for k in known if "." not in k]
        close = difflib.get_close_matches(key, siblings, n=2, cutoff=0.75) or \
            difflib.get_close_matches(key, known, n=2, cutoff=0.8)
        takes = _target_takes(cfg, parent, key.rsplit(".", 1)[-1]) if parent else None
        if takes:  # e.g. trainer.limit_train_batches: the class takes it, the config just does not list it
            hints.append(f"'{key}' is not in the config, but {takes} takes it: add it with '+{key}=...'")
            continue
        node = parent or "the top level"
        names = ", ".join(sorted(n for n in (k.rsplit(".", 1)[-1] for k in siblings) if n != "_target_")[:40])
        msg = f"unknown key '{key}'"
        msg += f": did you mean {' or '.join(repr(c) for c in close)}?" if close else "."
        msg += f" Keys of {node}: {names}." if names else ""
        if parent and OmegaConf.select(cfg, f"{parent}._target_", default=None):
            msg += f" ('+{key}=...' would not help: {OmegaConf.select(cfg, f'{parent}._target_')} does not take it.)"
        hints.append(msg)
    return hints


def run_cli(main: Callable[[], object], config_name: str) -> None:
    """Run a Hydra ``main``; when it fails, add the key hints after Hydra's message."""
    try:
        main()
    except SystemExit as e:
        if e.code not in (0, None):
            for line in key_hints(sys.argv[1:], config_name):
                print(line, file=sys.stderr)
        raise

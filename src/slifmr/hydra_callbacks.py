"""Hydra callbacks (conf/hydra/default.yaml): what a multirun says when it ends, and a dry run
that leaves the output tree as it found it.

A dry run (``dry_run=true``) composes every job and prints it, but Hydra still creates each
job's directory (and, for a study, rewrites the sweep's ``multirun.yaml``). Study job
directories are named by their overrides only, so they are the real jobs' directories: the
dry run must not write into them (``hydra.output_subdir`` is null then, see
:func:`hydra_subdir`) and everything it created is removed at the end -- only paths that did
not exist before it started, and the ``multirun.yaml`` it replaced is put back.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def hydra_subdir(dry_run: Any) -> str | None:
    """``hydra.output_subdir``: ``.hydra`` (the saved config of a run), None in a dry run."""
    return None if str(dry_run).lower() in ("true", "1") else ".hydra"


def _snapshot(root: Path) -> set[str]:
    if not root.exists():
        return set()
    out = {str(root)}
    for dirpath, dirnames, filenames in os.walk(root):
        out.update(os.path.join(dirpath, n) for n in dirnames + filenames)
    return out


class SweepHousekeeping(Callback):
    """Prints the report command when a training multirun ends; cleans up after dry runs."""

    def __init__(self) -> None:
        self._before: set[str] | None = None
        self._multirun_yaml: bytes | None = None
        self._made: list[Path] = []  # missing ancestors of the root, deepest first

    @staticmethod
    def _dry(config: DictConfig) -> bool:
        return bool(config.get("dry_run", False))

    def _start(self, root: Path) -> None:
        self._before = _snapshot(root)
        self._made = [p for p in [root, *root.parents] if not p.exists()][1:]
        yaml = root / "multirun.yaml"
        self._multirun_yaml = yaml.read_bytes() if yaml.is_file() else None

    def _clean(self, root: Path) -> None:
        """Remove what appeared under ``root`` since :meth:`_start` (files first, then the
        directories that are empty), and restore a replaced ``multirun.yaml``."""
        if self._before is None:
            return
        new = sorted(_snapshot(root) - self._before, key=lambda p: p.count(os.sep), reverse=True)
        for p in new:
            path = Path(p)
            if path.is_file() or path.is_symlink():
                path.unlink(missing_ok=True)
        for p in new:
            path = Path(p)
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        if self._multirun_yaml is not None:
            (root / "multirun.yaml").write_bytes(self._multirun_yaml)
        for p in self._made:
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()
        self._before, self._made = None, []

    # -- multirun -------------------------------------------------------------------------------
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if self._dry(config):
            self._start(Path(str(config.hydra.sweep.dir)))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if self._dry(config):
            self._clean(sweep_dir)
            print("dry run: nothing ran, and no job directory was kept", flush=True)
        elif config.get("task_name") == "train":
            print(f"\nall jobs done; tables and plots: python -m slifmr.report {sweep_dir}", flush=True)

    # -- single run -----------------------------------------------------------------------------
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if self._dry(config):
            self._start(Path(str(config.hydra.run.dir)))

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self._dry(config):
            self._clean(Path(str(config.hydra.run.dir)))

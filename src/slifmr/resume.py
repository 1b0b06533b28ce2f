"""Resuming a run: which checkpoint, in which directory, and is it the same run.

``resume=<run dir>`` continues that run in that directory (Hydra's run dir is set to it by
conf/hydra/default.yaml) from its ``checkpoints/last.ckpt``, written atomically at the end of
every epoch after the self-loop refresh. Lightning then restores the weights, the optimiser,
the loops, the self-loop graph, the best score (same ``dirpath``), early stopping's patience
and the result record's history; the samplers are seeded by (seed, epoch), so the resumed
epochs draw what the uninterrupted run drew.

A resumed run must be the same run: the composed config the checkpoint was written with is
stored in it and compared, except for the keys below that may change without changing results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from slifmr.checkpoints import CheckpointError, read_checkpoint
from slifmr.config import plain_config, upgrade_config
from slifmr.errors import DataError

CONFIG_KEY = "slifmr_config"
LAST = "last.ckpt"
# may differ between a run and its resumption: where and how it is logged, how long it runs
MAY_CHANGE = ("hydra", "paths", "resume", "ckpt_path", "train", "test", "dry_run", "tags", "logger", "task_name",
              "sweep_name", "trainer.max_epochs", "trainer.max_time", "trainer.enable_progress_bar",
              "callbacks.progress_bar", "debug", "trainer.default_root_dir", "callbacks.model_checkpoint.dirpath")


class ConfigInCheckpoint(pl.Callback):
    """Stores the run's composed config in every checkpoint it writes."""

    def __init__(self, config: dict[str, Any]):
        self.config = config

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint[CONFIG_KEY] = self.config


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every setting that differs, ignoring :data:`MAY_CHANGE`."""
    a, b = _flat(old), _flat(new)
    skip = lambda k: any(k == m or k.startswith(m + ".") for m in MAY_CHANGE)  # noqa: E731
    keys = sorted(k for k in set(a) | set(b) if not skip(k) and a.get(k, "<unset>") != b.get(k, "<unset>"))
    return [f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}" for k in keys]


def resolve_ckpt(cfg: DictConfig) -> str | None:
    """The checkpoint to resume from (``resume=<run dir>`` or ``ckpt_path=<file>``), checked:
    readable, weights only, written by the same configuration. None to start afresh."""
    resume, ckpt_path = cfg.get("resume"), cfg.get("ckpt_path")
    if resume:
        run_dir = Path(str(resume)).expanduser().resolve()
        if not run_dir.is_dir():
            raise DataError("resume: run directory not found", run_dir)
        out = Path(str(cfg.paths.output_dir)).expanduser().resolve()
        if out != run_dir:
            raise DataError(f"resume={run_dir} but this run writes to {out}: resume continues in the run's own "
                            "directory (do not override hydra.run.dir or paths.output_dir with resume)")
        path = run_dir / "checkpoints" / LAST
        if not path.is_file():
            raise CheckpointError(f"nothing to resume: the run wrote no {LAST} (killed before its first epoch "
                                  "ended, or trained with callbacks.model_checkpoint.save_last=false)", path)
        if ckpt_path not in (None, "last", str(path)):
            raise DataError(f"give resume=<run dir> or ckpt_path=<file>, not both (resume={run_dir}, "
                            f"ckpt_path={ckpt_path})")
    elif ckpt_path == "last":
        raise DataError("ckpt_path=last: name the run to continue with resume=<run dir> "
                        "(a new run directory has no last checkpoint)")
    elif ckpt_path:
        path = Path(str(ckpt_path)).expanduser()
    else:
        return None
    ckpt = read_checkpoint(path)
    stored = ckpt.get(CONFIG_KEY)
    if stored is not None:
        # a run recorded in an older layout is compared as today's code reads it (config.upgrade_config)
        diff = config_differences(OmegaConf.to_container(upgrade_config(OmegaConf.create(stored)), resolve=True),
                                  plain_config(cfg))
        if diff:
            raise CheckpointError("was written by another configuration; resume with the run's own settings "
                                  f"(differences: {'; '.join(diff[:6])}{' ...' if len(diff) > 6 else ''})", path)
    return str(path)

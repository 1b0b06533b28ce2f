"""Small pieces the entry points share: instantiate callbacks/loggers, finish W&B, what the
console shows (job label, closing block)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import hydra
from omegaconf import DictConfig

from slifmr.config import plain_config
from slifmr.records import monitored_value

log = logging.getLogger(__name__)


def instantiate_callbacks(cfg: DictConfig | None, progress_bar: bool = True) -> list:
    """Callbacks from config; ``progress_bar=False`` (``trainer.enable_progress_bar=false``) drops
    the progress bar, which Lightning refuses beside that flag."""
    if not cfg:
        return []
    callbacks = [hydra.utils.instantiate(c) for c in cfg.values() if c is not None and "_target_" in c]
    if not progress_bar:
        from pytorch_lightning.callbacks import ProgressBar

        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return callbacks


def train_batches_per_epoch(n_train: int, batch_size: int, limit: int | float | None = None) -> int:
    """Training batches of one epoch as Lightning will run them (``limit_train_batches``: an int
    caps the count, a float takes that fraction)."""
    n = max(1, math.ceil(n_train / batch_size))
    if limit is None:
        return n
    if isinstance(limit, int) and not isinstance(limit, bool):
        return max(1, min(n, limit))
    return max(1, int(n * float(limit)))


def log_interval(requested: int, batches: int) -> int:
    """``log_every_n_steps`` never above the epoch's batches: above it Lightning logs no step of
    an epoch and warns every epoch."""
    return max(1, min(int(requested), batches))


def job_label() -> str | None:
    """``job N: overrides`` inside a multirun job (its lines are told apart from the others'), else None."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if getattr(hc.mode, "name", str(hc.mode)) != "MULTIRUN":
        return None
    return f"job {hc.job.get('num', '?')}: {' '.join(hc.overrides.task) or '(no overrides)'}"


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s" if m else f"{seconds:.1f}s"


def closing_block(run_dir: str | Path, metrics: dict[str, float], seconds: float, record: Path | None = None,
                  checkpoint: str | None = None, label: str | None = None) -> str:
    """What a finished run says last: where everything is, the best epoch and its validation
    score (from the record), the test metrics as a metric x K table, the wall time."""
    lines = [f"run finished{f' ({label})' if label else ''} in {_duration(seconds)}",
             f"  run dir     {run_dir}"]
    rec = json.loads(Path(record).read_text()) if record is not None and Path(record).is_file() else {}
    if rec.get("best_epoch") is not None:
        monitor = rec.get("monitor") or "val/recall@20"
        value = monitored_value(rec, monitor)
        score = f" ({monitor} {value:.4f})" if value is not None else ""
        lines.append(f"  best epoch  {rec['best_epoch']} of {rec.get('epochs', '?')}{score}")
    test = {k.removeprefix("test/"): v for k, v in metrics.items() if k.startswith("test/") and "@" in k}
    if test:
        ks = sorted({int(k.split("@")[1]) for k in test})
        names = list(dict.fromkeys(k.split("@")[0] for k in test))
        lines.append("  test        " + "".join(f"{'@' + str(k):>9}" for k in ks))
        for n in names:
            cells = "".join(f"{test[f'{n}@{k}']:>9.4f}" if f"{n}@{k}" in test else " " * 9 for k in ks)
            lines.append(f"    {n:<10}" + cells)
    if checkpoint:
        lines.append(f"  checkpoint  {checkpoint}")
    if record is not None:
        lines.append(f"  record      {record}")
    return "\n".join(lines)


def instantiate_loggers(cfg: DictConfig | None, full_cfg: DictConfig) -> list:
    """Loggers from config; each gets the composed config as hyper-parameters."""
    if not cfg:
        return []
    loggers = [hydra.utils.instantiate(c) for c in cfg.values() if c is not None and "_target_" in c]
    hparams = plain_config(full_cfg)  # hydra's node is runtime-only
    for lg in loggers:
        lg.log_hyperparams(hparams)
    return loggers


def summarize_best(loggers: list, record: str | Path | None) -> None:
    """W&B's summary keeps each metric's last value; a run is judged by its best epoch, so the
    summary's ``val/*`` are set to the best epoch's (from the record) and ``best_epoch`` added."""
    if record is None or not Path(record).is_file():
        return
    rec = json.loads(Path(record).read_text())
    if rec.get("best_epoch") is None:
        return
    best = {f"val/{k}": v for k, v in (rec.get("val") or {}).items()}
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger":
            lg.experiment.summary.update({**best, "best_epoch": rec["best_epoch"]})


def finish_loggers(loggers: list) -> None:
    """Close W&B runs at job end, also when the job failed: one W&B run per multirun job."""
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger":
            import wandb

            if wandb.run is not None:
                wandb.finish()


def print_metrics(metrics: dict[str, float], prefix: str) -> None:
    rows = sorted((k, v) for k, v in metrics.items() if k.startswith(prefix))
    if not rows:
        return
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v:.4f}" for k, v in rows))


def _slifmr_error(exc: BaseException) -> BaseException | None:
    """The error of bad input or configuration behind ``exc``, if any: a DataError anywhere in the
    chain, or the ValueError a constructor raised on a config value (Hydra wraps it in an
    InstantiationException that names the target)."""
    from hydra.errors import InstantiationException

    from slifmr.errors import DataError

    seen = set()
    chain = []
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    found = next((e for e in chain if isinstance(e, DataError)), None)
    value_error = next((e for e in chain[1:] if type(e) is ValueError), None)
    if found is None and isinstance(chain[0], InstantiationException) and value_error is not None:
        key = re.search(r"full_key: (\S+)", str(chain[0]))
        return ValueError(f"{key.group(1) if key else 'config'}: {value_error}")
    return found


@contextlib.contextmanager
def report_errors() -> Iterator[None]:
    """Bad input ends a run with one line on stderr and exit status 2, not a traceback; bugs keep
    theirs. ``HYDRA_FULL_ERROR=1`` or ``SLIFMR_DEBUG=1`` keep the full traceback for both."""
    try:
        yield
    except Exception as exc:
        err = _slifmr_error(exc)
        if err is None or os.environ.get("HYDRA_FULL_ERROR") == "1" or os.environ.get("SLIFMR_DEBUG") == "1":
            raise
        message = " ".join(str(err).split())  # one line, whatever the message
        print(f"error: {message}  (SLIFMR_DEBUG=1 shows the traceback)", file=sys.stderr, flush=True)
        raise SystemExit(2) from None

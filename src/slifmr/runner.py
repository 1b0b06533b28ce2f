"""Small pieces the entry points share: instantiate callbacks/loggers, finish W&B, print."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def instantiate_callbacks(cfg: DictConfig | None) -> list:
    if not cfg:
        return []
    return [hydra.utils.instantiate(c) for c in cfg.values() if c is not None and "_target_" in c]


def instantiate_loggers(cfg: DictConfig | None, full_cfg: DictConfig) -> list:
    """Loggers from config; each gets the composed config as hyper-parameters."""
    if not cfg:
        return []
    loggers = [hydra.utils.instantiate(c) for c in cfg.values() if c is not None and "_target_" in c]
    plain = OmegaConf.masked_copy(full_cfg, [k for k in full_cfg if k != "hydra"])  # hydra's node is runtime-only
    hparams = OmegaConf.to_container(plain, resolve=True)
    for lg in loggers:
        lg.log_hyperparams(hparams)
    return loggers


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
    """The DataError (bad input or configuration) behind ``exc``, if any: Hydra wraps the errors
    a constructor raises in an InstantiationException."""
    from slifmr.errors import DataError

    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, DataError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


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
        print(f"error: {err}  (SLIFMR_DEBUG=1 shows the traceback)", file=sys.stderr, flush=True)
        raise SystemExit(2) from None

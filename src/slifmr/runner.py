"""Small pieces the entry points share: instantiate callbacks/loggers, finish W&B, print."""

from __future__ import annotations

import contextlib
import logging
import os
import re
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

"""Test-only callback: SIGKILL this process at ``SLIFMR_TEST_KILL_AT=epoch:batch`` (unset: never),
so a test can interrupt a run exactly mid-epoch the way a scheduler or the OOM killer does."""

from __future__ import annotations

import os
import signal

import pytorch_lightning as pl


class KillAt(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        at = os.environ.get("SLIFMR_TEST_KILL_AT")
        if at and tuple(map(int, at.split(":"))) == (trainer.current_epoch, batch_idx):
            os.kill(os.getpid(), signal.SIGKILL)

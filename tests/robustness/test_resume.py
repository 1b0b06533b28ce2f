"""Exact resume after a kill: a run SIGKILLed mid-epoch and resumed with ``resume=<run dir>``
ends with the same test metrics, best epoch and validation history as a run never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hydra_compose import make_cfg
from slifmr.train import train

HERE = Path(__file__).resolve().parent
COMMON = ["model=slifmr", "model.prune_ratio=0.5", "trainer.max_epochs=3", "dataset.batch_size=512", "callbacks.progress_bar=null",
          "callbacks.early_stopping.patience=10", "+callbacks.killer._target_=killer.KillAt"]


def _env(**extra) -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(HERE), **extra)


def test_killed_run_resumes_exactly(tmp_path, shared_data, monkeypatch):
    data = ["dataset=ml-100k-kg-tiny", f"paths.data_dir={shared_data}"]
    run = tmp_path / "killed" / "run"  # make_cfg(tmp_path / "killed") writes here
    # killed in epoch 1 after its second batch: last.ckpt is the end of epoch 0
    proc = subprocess.run([sys.executable, "-m", "slifmr.train", *data, *COMMON, f"hydra.run.dir={run}"],
                          env=_env(SLIFMR_TEST_KILL_AT="1:1"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 0 and not (run / "record.json").exists()
    assert not list((run / "checkpoints").glob("*.tmp")) and not list((run / "checkpoints").glob(".*.tmp"))

    # the resumed run continues in the same directory (in-process here: same code path as the CLI)
    monkeypatch.syspath_prepend(str(HERE))
    resumed = train(make_cfg(tmp_path / "killed", data + COMMON + [f"resume={run}"]))
    whole = train(make_cfg(tmp_path / "whole", data + COMMON))

    a = json.loads((run / "record.json").read_text())
    b = json.loads((tmp_path / "whole" / "run" / "record.json").read_text())
    assert [h["epoch"] for h in a["val_history"]] == [0, 1, 2]
    assert a["val_history"] == b["val_history"]
    assert a["best_epoch"] == b["best_epoch"] and a["test"] == b["test"]
    test_keys = [k for k in whole if k.startswith("test/")]
    assert test_keys and all(resumed[k] == whole[k] for k in test_keys)

"""The launchers of docs/studies.md: joblib runs a sweep's jobs in worker processes; the SLURM
config composes onto the submitit plugin's schema with the documented keys."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _has("hydra_plugins.hydra_joblib_launcher"),
                    reason="hydra-joblib-launcher not installed (pip install -e '.[dev]' or '.[launchers]')")
def test_joblib_launcher_runs_a_dry_sweep(tmp_path):
    """2 jobs, 2 worker processes: each job is composed and dry-run in its own process."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "slifmr.train", "-m", "+sweep=fig5", "model.fusion=ailf,sum", "seed=1",
           "dry_run=true", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"paths.log_dir={tmp_path}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Joblib.Parallel" in proc.stdout + proc.stderr  # the joblib launcher ran them, not the basic one
    lines = [line for line in proc.stdout.splitlines() if line.startswith("[dry-run]")]
    assert len(lines) == 2
    jobs = sorted(line.rsplit(" | ", 1)[1] for line in lines)  # where each job would run
    base = tmp_path / "sweeps" / "fig5" / "movietweetings-10core"
    assert jobs == [str(base / "model.fusion=ailf,seed=1"), str(base / "model.fusion=sum,seed=1")]
    assert not (tmp_path / "sweeps").exists()  # a dry run leaves no directory behind (made in the workers)


@pytest.mark.skipif(not _has("hydra_plugins.hydra_submitit_launcher"),
                    reason="hydra-submitit-launcher not installed (pip install -e '.[launchers]')")
def test_slurm_launcher_config_composes():
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="slifmr.conf", version_base="1.3"):
        cfg = compose("train", overrides=["+sweep=table3", "hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    GlobalHydra.instance().clear()
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1 and launcher.tasks_per_node == 1
    assert launcher.timeout_min == 240 and launcher.array_parallelism == 32

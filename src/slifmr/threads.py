"""Torch threads of a job in a parallel sweep: each job gets its share of the cores.

Under ``hydra/launcher=joblib`` with ``n_jobs`` workers, every job would otherwise start as many
intra-op threads as the machine has cores, and n_jobs x cores threads on the cores slowed runs
down up to 30x on a loaded 2-core machine (issue 13). An ``OMP_NUM_THREADS`` set by the user wins.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch


def threads_for_job(launcher: Mapping | None, env: Mapping[str, str], cores: int) -> int | None:
    """``max(1, cores // n_jobs)`` for a joblib launcher's job (``n_jobs`` -1 or None: one job per
    core), None when the launcher is not joblib or ``OMP_NUM_THREADS`` is set (leave torch as it is)."""
    if launcher is None or "joblib" not in str(launcher.get("_target_", "")) or "OMP_NUM_THREADS" in env:
        return None
    n_jobs = launcher.get("n_jobs")
    n_jobs = cores if n_jobs is None or int(n_jobs) < 1 else int(n_jobs)
    return max(1, cores // n_jobs)


def size_job_threads() -> int | None:
    """Set this job's torch threads from the Hydra launcher it runs under (see module docstring)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = threads_for_job(HydraConfig.get().launcher, os.environ, cores)
    if n is not None:
        torch.set_num_threads(n)
    return n

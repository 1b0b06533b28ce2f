"""Where and how a run ran, for its result record: the git revision of the checkout, the package
version, the CPU and peak memory (the overrides: ``slifmr.config.hydra_parts``). Best effort: a run never
fails for these."""

from __future__ import annotations

import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch


def git_revision() -> dict[str, Any] | None:
    """The checkout's commit (and whether tracked files differ from it) when the package runs
    from a git checkout of this project; None otherwise. Never raises."""
    try:
        here = Path(__file__).resolve().parent
        run = lambda *a: subprocess.run(["git", "-C", str(here), *a], capture_output=True, text=True,  # noqa: E731
                                        timeout=10, check=True).stdout.strip()
        top = Path(run("rev-parse", "--show-toplevel"))
        if not (top / "src" / "slifmr").is_dir():  # some other repository around an installed package
            return None
        return {"revision": run("rev-parse", "HEAD"),
                "dirty": bool(run("status", "--porcelain", "--untracked-files=no"))}
    except Exception:  # noqa: BLE001 - provenance is best effort, a run must not fail for it
        return None


def cpu_description() -> dict[str, Any]:
    """The processor, the instruction set torch's CPU kernels dispatch to and the intra-op thread
    count: the three things besides the code that decide a CPU run's last float bits
    (docs/determinism.md), so that two records that differ can be told apart. Never raises."""
    out: dict[str, Any] = {"cpu": None, "cpu_capability": None, "threads": None}
    try:
        out["threads"] = int(torch.get_num_threads())
        out["cpu_capability"] = str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001 - provenance is best effort
        pass
    try:
        with open("/proc/cpuinfo") as f:
            out["cpu"] = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        pass
    out["cpu"] = out["cpu"] or platform.processor() or platform.machine() or None
    return out


def package_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("slifmr")
    except PackageNotFoundError:
        return None


def memory() -> dict[str, float | None]:
    """Peak resident set size of this process (and peak CUDA allocation, if CUDA was used), MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_mb = rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux
    cuda_mb = None
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            cuda_mb = torch.cuda.max_memory_allocated() / 2**20
    except Exception:  # noqa: BLE001
        pass
    return {"peak_rss_mb": round(rss_mb, 1), "cuda_peak_mb": None if cuda_mb is None else round(cuda_mb, 1)}

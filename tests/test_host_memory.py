"""slifmr.host_memory: with the settings on, once the heap has grown (a few rounds: freed blocks
must coalesce before a block of the same size fits), a freed 64 MiB tensor's pages are reused by
the next one (no new page faults); with glibc's defaults every such tensor is a fresh mapping
whose pages all fault in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = r"""
import resource, sys, torch
from slifmr.host_memory import keep_freed_memory
if sys.argv[1] == "on":
    assert keep_freed_memory() and keep_freed_memory()  # idempotent
n = (64 << 20) // 4  # 64 MiB of float32: above glibc's own mmap ceiling (32 MiB)
for step in range(30):  # the last 10: a training step's steady state
    if step == 20:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(n)
    del x
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_tensor_memory_is_reused_instead_of_faulted_in_again():
    pages = (64 << 20) // 4096
    off, on = _faults("off"), _faults("on")
    assert off > 10 * pages // 2  # glibc's defaults: a fresh mapping each time, every page faulted in again
    assert on < pages // 2  # kept in the heap: the same pages, already mapped


def test_the_callback_applies_it_by_default_and_can_leave_it_off(monkeypatch):
    from slifmr.callbacks import accelerate

    calls = []
    monkeypatch.setattr(accelerate, "keep_freed_memory", lambda: calls.append(1) or True)
    accelerate.Accelerate().setup(None, None, "fit")
    accelerate.Accelerate(host_heap=False).setup(None, None, "fit")
    assert calls == [1]

"""Host memory: let glibc reuse freed tensor memory instead of handing it back to the kernel each step.

A training step on the CPU allocates and frees the same large buffers every step (a KG model's
gradient of an ``index_select`` from its (N, d) table is a zeroed (N, d) tensor; DiffKG's
denoiser gradient is 139 MB). glibc serves a block above its mmap threshold (128 KiB, rising
only to 32 MiB after frees) with a fresh ``mmap`` and returns it with ``munmap`` on free, so every
step touches new pages: a page fault per 4 KiB, and the kernel zeroes each page. Raising the
threshold and the trim threshold keeps those blocks in the heap, where the next step finds them.

Measured on ml-100k-kg, one thread, the 2-core machine loaded by two search jobs, two interleaved
rounds of off and on (``benchmarks/step_time.py --host-heap {off,on}``, figures in
benchmarks/README.md): median step SLIF-MR 0.83 -> 0.62 s, KACL 1.24 -> 0.94 s (both 0.75x), KGRec,
KRDN, DiffKG about 0.9x, KGCL and LightGCN within the noise. A run computes the same numbers
(the same kernels on the same values: records of 8 models bit-identical on and off).

The cost: memory a run freed stays with the process until it exits; peak RSS the same within
2 % for all but DiffKG (+10 %, 1.96 -> 2.16 GB).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB from the heap (glibc's own dynamic ceiling is 32 MiB)
TRIM_THRESHOLD = (1 << 31) - 1  # never trim the heap's top back to the kernel
TOP_PAD = 256 << 20  # grow the heap 256 MiB at a time (pages are only touched when used)

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the settings above once per process; True when they are in force (glibc), False
    elsewhere (macOS, Windows, musl: their allocators are left alone) or when glibc refused one."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = all(mallopt(param, value) == 1 for param, value in
             ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
    if not ok:
        log.warning("glibc refused a mallopt setting: host memory is managed by its defaults")
    _applied = ok
    return ok

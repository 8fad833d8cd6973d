"""Fixed glibc malloc thresholds for the stage processes, so CPU tensors of a few MiB reuse freed memory.

glibc serves a block above ``M_MMAP_THRESHOLD`` (128 KiB at start, moved up to the largest block freed so far) by
``mmap`` and gives it back by ``munmap`` when freed, and trims the heap's free top once it exceeds
``M_TRIM_THRESHOLD`` (twice the mmap threshold). A CPU sampling step allocates and frees tensors of ~1 MiB dozens
of times, so every step maps fresh pages and takes a page fault per 4 KiB of them: the toy sampling job (25K
samples, 100 steps) spent 5.4 s of its 21.0 s in the kernel on a 2-core AVX2 machine. Fixed thresholds above those
sizes keep the freed memory in the heap for the next step: 14.6-15.1 s (0.4-0.5 s in the kernel), x1.39-1.60 over
three runs (the last one with these values), samples bit-identical; training, whose step allocates less, x0.93-1.17
(benchmarks/logs/malloc_thresholds_cpu_2core.log). In the default DAG, two jobs sharing 2 cores, the sample jobs'
mean went from 24.5 to 22.4 s (benchmarks/logs/default_dag_cpu_2core.log).

The values bound what a process keeps beyond its live tensors: at most :data:`TRIM_BYTES` of free heap top per
malloc arena (a process has up to 8 arenas per core, one per thread that allocated at the same time as another);
blocks from :data:`MMAP_BYTES` on are still mapped and unmapped as before (image batches, host buffers of GPU jobs).
"""

from __future__ import annotations

import ctypes
import os
import sys

#: blocks from this size on are mmap'ed (glibc's default starts at 128 KiB and moves)
MMAP_BYTES = 4 << 20
#: free memory at the heap's top beyond this is given back to the system
TRIM_BYTES = 32 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers (malloc.h)


def keep_freed_memory() -> bool:
    """Set :data:`MMAP_BYTES` / :data:`TRIM_BYTES` for this process (and the processes it forks) through glibc's
    ``mallopt``; True if set. Nothing happens off Linux / glibc, or where the environment already sets a
    ``MALLOC_*`` tunable (the user's, or a benchmark's fixed setting, wins)."""
    if not sys.platform.startswith("linux") or any(key.startswith("MALLOC_") for key in os.environ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries: their allocator, their defaults
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_BYTES))

"""CPU memory behaviour that decides a large share of a video model's CPU time.

A video batch's activations on a CPU are tens of MB per tensor. glibc's ``malloc`` serves
blocks that large with a fresh ``mmap`` and unmaps them on ``free``, so every forward pass
page-faults its activations in again, and the faults penalise every extra full-size temporary
(the reason TSM's inference shift works in place); the measured effect is in
``docs/benchmark_cpu.md`` (``tools/benchmark.py --malloc-cache``).
:func:`cache_freed_memory` makes glibc keep freed memory in the process, as the caching
allocators that CPU inference deployments use (jemalloc, tcmalloc) do.
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters, <malloc.h>


def cache_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory: no ``mmap`` for large blocks (each would be
    unmapped on free and faulted in again on the next allocation) and no trimming of the
    heap, so that freed blocks are mostly reused without page faults (not always: glibc still
    returns some freed pages). The process then holds on to its peak memory. True when it took effect (Linux with
    glibc); elsewhere a no-op returning False. Call it once, early, before the hot loop."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):
        return False

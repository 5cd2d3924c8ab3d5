"""Keep a long job's anonymous memory at what it holds, not at what it once allocated.

glibc's malloc serves a large block from the heap instead of a fresh mapping once a block of
that size has been freed (its mmap threshold rises to the largest freed block, up to 32 MiB).
A training run frees many such blocks per step (score matrices, permutations of the anchors,
batches of stored features), so the heap fills with freed holes it cannot return, and the
process's RssAnon grows with the catalog: measured on a 10^5-pin run, 1,489 MiB with the
default against 994 MiB with a fixed threshold (bench/bench_scale_train.py, BENCHMARKS.md §7).

`bound_heap_growth(n_pins)` fixes the threshold (blocks ≥ 256 KiB get their own mapping,
returned to the kernel when freed) and trims the heap above 4 MiB. It is what setting
`MALLOC_MMAP_THRESHOLD_=262144 MALLOC_TRIM_THRESHOLD_=4194304` before start does; an
explicit environment setting wins. A no-op where the C library is not glibc (macOS, musl).

The bound has a price: every freed step buffer is unmapped and the next step faults fresh
zeroed pages in: 60 CPU steps of the demo config took 55 s with it against 35 s without
(38 s of kernel time against 5 s; BENCHMARKS.md §7). So it
is set only for jobs over at least `BOUND_FROM_PINS` pins, where the catalog-sized blocks
make the holes costly; a smaller job keeps glibc's own, faster thresholds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform
import sys

__all__ = ["BOUND_FROM_PINS", "bound_heap_growth", "trim_heap"]

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 * 1024
TRIM_THRESHOLD = 4 * 1024 * 1024
#: Jobs over fewer pins keep glibc's thresholds: their freed holes are small, and the bound
#: would cost them ~1.6x the step time on the CPU.
BOUND_FROM_PINS = 20_000


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The process's glibc, None elsewhere (musl, macOS, Windows): mallopt/malloc_trim are
    glibc's. Looked up once: `find_library` forks `ldconfig`, and a fork of a large process
    briefly doubles what a sampler of its process tree counts."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")  # glibc's soname on every Linux architecture
    except OSError:
        try:
            return ctypes.CDLL(ctypes.util.find_library("c"))
        except OSError:
            return None


def bound_heap_growth(n_pins: int) -> bool:
    """Fix glibc's mmap and trim thresholds for this process when a job over `n_pins` pins
    is large enough to need it; True if they were set."""
    if n_pins < BOUND_FROM_PINS:
        return False
    libc = _glibc()
    if libc is None:
        return False
    done = True
    for name, param, value in (
        ("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        ("MALLOC_TRIM_THRESHOLD_", _M_TRIM_THRESHOLD, TRIM_THRESHOLD),
    ):
        if name not in os.environ:  # the user's own tuning stays
            done &= libc.mallopt(param, value) == 1
    return done


def trim_heap() -> bool:
    """Give freed memory back to the kernel: Arrow's pool (mimalloc/jemalloc keep freed
    pages for reuse) and glibc's heap (`malloc_trim`); True if glibc trimmed.

    For a step that builds many short-lived values and keeps few (validating a catalog:
    Python values per row, then only Arrow columns; Arrow hash tables matching edge ids):
    without it the freed pages stay in RssAnon for the life of the process.
    """
    arrow = sys.modules.get("pyarrow")
    if arrow is not None:
        arrow.default_memory_pool().release_unused()
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.malloc_trim(0))

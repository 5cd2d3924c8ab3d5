"""pinclip.memory: the heap thresholds are set in this process (glibc) and in a fresh one."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from pinclip import memory
from pinclip.memory import BOUND_FROM_PINS, bound_heap_growth

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="mallopt thresholds are glibc's")
def test_bound_heap_growth_returns_freed_blocks_to_the_kernel() -> None:
    # with the threshold fixed at 256 KiB a freed 1 MiB block is unmapped at once, so the
    # anonymous memory after `del` is what it was before; with glibc's dynamic threshold the
    # 1 MiB blocks land in the heap between live small objects and stay resident when freed
    probe = r"""
import sys
from pinclip.memory import BOUND_FROM_PINS, bound_heap_growth
def rss():
    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('RssAnon'))
if sys.argv[1] == 'bound':
    assert bound_heap_growth(BOUND_FROM_PINS)
elif sys.argv[1] == 'small':  # a small job keeps glibc's thresholds
    assert not bound_heap_growth(BOUND_FROM_PINS - 1)
blocks = [bytearray(1 << 20) for _ in range(4)]  # raise the dynamic threshold past 1 MiB
del blocks
before = rss()
held, pins = [], []
for _ in range(64):  # 64 MiB, each block followed by a small object that stays alive
    held.append(bytearray(1 << 20))
    pins.append(bytearray(4096))  # > 512 B: from malloc, not pymalloc
del held  # the small objects pin the heap: its freed holes cannot be trimmed
print(rss() - before)
"""
    grown = {
        mode: int(
            subprocess.run(
                [sys.executable, "-c", probe, mode], capture_output=True, text=True, check=True
            ).stdout
        )
        for mode in ("bound", "small", "default")
    }
    assert grown["bound"] < 8 * 1024, grown  # KiB: the 64 MiB went back to the kernel
    assert grown["default"] > 32 * 1024, grown  # the test shows the growth it prevents
    assert grown["small"] > 32 * 1024, grown  # below BOUND_FROM_PINS nothing was changed


def test_bound_heap_growth_is_a_no_op_elsewhere(monkeypatch) -> None:
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    memory._glibc.cache_clear()  # looked up once per process: look again on "Darwin"
    try:
        assert bound_heap_growth(BOUND_FROM_PINS) is False
    finally:
        memory._glibc.cache_clear()


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_trim_heap_hands_freed_small_objects_back() -> None:
    # a million small strings freed leave their heap pages resident until trimmed
    probe = r"""
import gc, sys
from pinclip.memory import trim_heap
def rss():
    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('RssAnon'))
base = rss()
keep = []
junk = [("x" * 600) + str(i) for i in range(100_000)]  # > 512 B: malloc, not pymalloc
for i in range(0, len(junk), 1000):
    keep.append(junk[i])  # a few survivors pin nothing once the heap is trimmed
del junk
gc.collect()
before = rss() - base
assert trim_heap() is True
print(before, rss() - base)
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    before, after = map(int, out.stdout.split())
    assert after < before / 2, (before, after)

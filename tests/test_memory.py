"""Freed heap memory goes back to the system after release_freed_memory, or at once with map_large_blocks, and after
large_blocks_mapped the heap serves such blocks again (glibc; elsewhere each says it did nothing)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from circuitcut.memory import _trim

# In a process of its own: it fixes glibc's mmap threshold at 32 MB (HEAP_BLOCKS), as a long run's
# freed blocks raise it, so 3 MB tensors come from the heap ("map": at 1 MB, map_large_blocks); frees them between
# live blocks and asks for their pages back ("release"); "scoped": after leaving large_blocks_mapped.
SCRIPT = """
import os, sys
import torch
from circuitcut.memory import HEAP_BLOCKS, large_blocks_mapped, map_large_blocks, release_freed_memory
if sys.argv[1] == "map":
    map_large_blocks()
elif sys.argv[1] == "scoped":
    with large_blocks_mapped():
        pass
else:
    map_large_blocks(HEAP_BLOCKS)
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
small, kept = [], []
for _ in range(100):  # each freed block sits between two live ones, as a run's do
    small.append(torch.ones(2**20 // 4 * 3))
    kept.append(torch.ones(1024))
before = rss()
del small
if sys.argv[1] == "release":
    release_freed_memory()
print(before - rss())
"""


def _freed_mb(how: str) -> float:
    out = subprocess.run([sys.executable, "-c", SCRIPT, how], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 2**20


@pytest.mark.skipif(_trim() is None, reason="the C library has no malloc_trim")
def test_freed_heap_tensors_leave_the_resident_set_only_when_released():
    assert _freed_mb("keep") < 50
    assert _freed_mb("release") > 250


@pytest.mark.skipif(_trim() is None, reason="the C library has no mallopt")
def test_with_large_blocks_mapped_freed_tensors_leave_at_once():
    assert _freed_mb("map") > 250


@pytest.mark.skipif(_trim() is None, reason="the C library has no mallopt")
def test_after_large_blocks_mapped_the_heap_serves_them_again():
    assert _freed_mb("scoped") < 50

"""Giving freed memory back to the system between the phases of a long run.

glibc serves allocations under its mmap threshold (which grows up to 32 MB as large blocks are freed)
from the heap and keeps their pages when they are freed: a weight run's 105 score matrices, their Adam
moments and gradients (at most 3.5 MB each) stay resident after training, and the evaluation's logits,
mapped apart, come on top of them. ``malloc_trim`` hands the free pages back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import cache


@cache
def _trim():
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    return getattr(libc, "malloc_trim", None)


def release_freed_memory() -> bool:
    """Collect garbage and return the C heap's free pages to the system; ``False`` where the C library
    has no ``malloc_trim`` (macOS, musl), which changes nothing there."""
    gc.collect()
    trim = _trim()
    if trim is None:
        return False
    trim(0)
    return True

"""Giving freed memory back to the system during and between the phases of a long run.

glibc serves allocations under its mmap threshold (which grows up to 32 MB as large blocks are freed)
from the heap and keeps their pages when they are freed: a weight run's 105 score matrices, their Adam
moments and gradients (at most 3.5 MB each) stay resident after training, and the evaluation's logits,
mapped apart, come on top of them. ``malloc_trim`` hands the free pages back (:func:`release_freed_memory`).
During training, a text window's 25 MB of logits and their gradients are allocated and freed at every step;
from the heap, whose holes never quite fit the next step's blocks, the resident size creeps up by tens of
MB a step. :func:`map_large_blocks` gives every block of a megabyte or more a mapping of its own instead.
That costs a page fault per 4 KB page each time such a block is allocated, which forwards without a backward
(a run's prefix, references and evaluation) pay for nothing: :func:`large_blocks_mapped` maps blocks only
around the training steps, and hands them back to the heap afterwards.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache


M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter: allocations of at least this many bytes are mapped apart (setting it stops it growing)."""

HEAP_BLOCKS = 32 * 2**20
"""The threshold glibc's own rule grows to in a long run (its maximum on 64-bit systems): blocks below it come from
the heap, whose freed pages the next blocks reuse without faulting them in again."""


@cache
def _libc(function: str):
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    return getattr(libc, function, None)


def _trim():
    return _libc("malloc_trim")


def map_large_blocks(threshold: int = 2**20) -> bool:
    """From now on in this process, give every allocation of ``threshold`` bytes or more a mapping of its own,
    returned to the system when freed (glibc's mmap threshold, fixed); ``False`` where the C library has no
    ``mallopt``, which changes nothing there. A mapping is zeroed by the kernel on first touch: a few
    milliseconds for a step's tens of megabytes."""
    mallopt = _libc("mallopt")
    return mallopt is not None and bool(mallopt(M_MMAP_THRESHOLD, threshold))


@contextmanager
def large_blocks_mapped(threshold: int = 2**20) -> Iterator[bool]:
    """Inside, :func:`map_large_blocks` (yields whether it could); on leaving, blocks under :data:`HEAP_BLOCKS`
    come from the heap again. The heap's free pages go back to the system on entering and on leaving
    (:func:`release_freed_memory`)."""
    release_freed_memory()
    mapped = map_large_blocks(threshold)
    try:
        yield mapped
    finally:
        if mapped:
            map_large_blocks(HEAP_BLOCKS)
        release_freed_memory()


def release_freed_memory() -> bool:
    """Collect garbage and return the C heap's free pages to the system; ``False`` where the C library
    has no ``malloc_trim`` (macOS, musl), which changes nothing there."""
    gc.collect()
    trim = _trim()
    if trim is None:
        return False
    trim(0)
    return True


def peak_rss_mb() -> float | None:
    """This process's peak resident set size so far, in MB (2**20 bytes; what ``/usr/bin/time -v`` reports as
    maximum resident set size); ``None`` where the platform does not tell (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # macOS counts bytes, Linux kilobytes

"""How many CPU threads torch uses: one per core that is not already busy.

torch takes every core by default. On a machine where other jobs run, its threads then wait on
each other (docs/usage.md gives how much slower pruning runs got), so the
default here counts only the cores the 1-minute load average leaves free.
"""

from __future__ import annotations

import os

import torch


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_threads() -> int:
    """Cores left free by the load of the last minute, at least one."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows has no load average
        load = 0.0
    return max(1, available_cores() - round(load))


def set_threads(n: int | None = None) -> int:
    """Make torch use ``n`` threads (default: :func:`default_threads`); returns the number set."""
    n = default_threads() if n is None else n
    if n < 1:
        raise ValueError(f"--threads {n}: torch needs at least one thread.")
    torch.set_num_threads(n)
    return n

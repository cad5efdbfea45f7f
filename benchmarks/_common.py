"""Shared helpers of the benchmarks: the machine, interleaved timing, JSON output.

The CPU is shared with other jobs, so absolute times drift by factors; every benchmark reports
*ratios* of quantities timed in the same process, interleaved round by round (A B C, A B C ...),
and the median over rounds of the per-round ratio. Each quantity is timed twice: wall-clock and
this process's CPU time. With one torch thread (``--threads 1``) CPU time counts the work done and
not the waits for a core that other jobs hold, so its ratios are the steadier ones on a loaded
machine; with more threads, idle OpenMP workers spin and CPU time overstates the work.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "load_average_1_5_15": [round(x, 2) for x in load] if load else None,
    }


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, warmup: bool = True
                ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Run every function once per round, in order, ``rounds`` times; return (wall, cpu) times per function."""
    if warmup:
        for fn in fns.values():
            fn()
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start)
    return wall, cpu


def ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    """Median over rounds of ``time[num] / time[den]`` (paired within each round)."""
    return statistics.median(a / b for a, b in zip(times[num], times[den]))


def summary(times: dict[str, list[float]], tokens: int | None = None) -> dict:
    out = {}
    for name, ts in times.items():
        entry = {"median_s": round(statistics.median(ts), 3), "all_s": [round(t, 3) for t in ts]}
        if tokens:
            entry["tokens_per_s"] = round(tokens / statistics.median(ts), 1)
        out[name] = entry
    return out


def emit(result: dict) -> None:
    print(json.dumps(result, indent=2))


def prose_windows(tokenizer, n_windows: int, window: int = 128, split: str = "stats", seed: int = 0) -> torch.Tensor:
    from circuitcut.data.corpora import corpus_windows

    return corpus_windows("prose", tokenizer, n_tokens=n_windows * window, window=window, split=split, seed=seed)[:n_windows]

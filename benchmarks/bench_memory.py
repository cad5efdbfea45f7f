"""Peak memory of statistics collection: does it grow with the number of tokens?

    python benchmarks/bench_memory.py [--windows 4] [--factor 10] [--batch-size 4] [--repeats 1]

Each size runs in its own subprocess (so one run's peak cannot hide another's). The child loads
SmolLM2, resets the kernel's peak-RSS mark (``/proc/self/clear_refs``), collects statistics on
``windows`` (or ``factor`` x ``windows``) windows of 128 tokens and reports its peak RSS during
collection, the RSS before it, and the whole process's peak (``VmHWM`` is reset, so the whole-run
peak comes from ``ru_maxrss``, which the reset does not touch).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
from pathlib import Path


def _status_kb(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def child(windows: int, batch_size: int, threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)
    import circuitcut
    from circuitcut.stats import collect_stats

    model = circuitcut.load_model("smollm2", device="cpu")
    tokens = torch.randint(0, model.cfg.d_vocab, (windows, 128), generator=torch.Generator().manual_seed(0))
    collect_stats(model, tokens[:batch_size], ["mlp", "attn_v"], batch_size=batch_size)  # warm-up: allocator, lazy init
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    stats = collect_stats(model, tokens, ["mlp", "attn_v"], batch_size=batch_size)
    print(json.dumps({
        "windows": windows,
        "tokens": stats.count,
        "torch_threads": torch.get_num_threads(),
        "rss_before_mb": before / 1024,
        "peak_during_collection_mb": _status_kb("VmHWM") / 1024,
        "process_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.batch_size, args.threads)
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import emit, machine

    runs = {"small": [], "large": []}
    for _ in range(args.repeats):
        for name, n in (("small", args.windows), ("large", args.windows * args.factor)):
            cmd = [sys.executable, __file__, "--child", str(n), "--batch-size", str(args.batch_size)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            runs[name].append(json.loads(out.strip().splitlines()[-1]))
    small = min(r["peak_during_collection_mb"] for r in runs["small"])
    large = min(r["peak_during_collection_mb"] for r in runs["large"])
    small_total = min(r["process_peak_mb"] for r in runs["small"])
    large_total = min(r["process_peak_mb"] for r in runs["large"])
    emit({
        "benchmark": "statistics peak memory vs tokens",
        "machine": {**machine(), "torch_threads": runs["small"][0]["torch_threads"]},
        "model": "smollm2, sites mlp + attn_v",
        "token_factor": args.factor,
        "ratios": {
            "collection_peak_growth": round(large / small - 1, 4),
            "process_peak_growth": round(large_total / small_total - 1, 4),
            "target": "<= 0.10",
        },
        "runs": runs,
    })


if __name__ == "__main__":
    main()

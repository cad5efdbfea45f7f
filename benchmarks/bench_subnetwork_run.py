"""One subnetwork run, twice in one process: the current defaults and the previous full path, timed, masks side by side.

    python benchmarks/bench_subnetwork_run.py --granularity weight [--target isa:animal] [--seed 0] [--threads 2]

``new``: the config ``circuitcut subnet`` runs by default (``--preset weights`` for weight masks);
``full``: the same config with the frozen prefix off (``prefix_cache_mb=0``), the learning rate not
scaled to the run (``lr_steps=None``), no early stop, and the steps and validations of the runs
before them (150 steps, a validation every 25). Both train on the same data (built once, its time
reported apart) and are evaluated the same way (original, remaining, ``random_seeds`` random masks);
the times cover training and evaluation. Everything else is the current code for both (fact logits
unembedded at one position, the lean Gumbel sample), so the ratios count only what the three
switches change.

Peak RSS is the process's: after ``new`` it is the new path's peak, after ``full`` the larger of the two.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from _common import emit, machine

import circuitcut
from circuitcut.subnetwork import SubnetworkConfig, find_subnetwork, preset
from circuitcut.subnetwork.run import run_data

FULL = dict(prefix_cache_mb=0.0, lr_steps=None, early_stop=None, steps=150, validate_every=25)
"""What the previous runs did: no prefix cache, 150 steps at the learning rate as given, no early stop."""


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(model, config: SubnetworkConfig, folder: Path, data) -> tuple[dict, float, float]:
    start, start_cpu = time.perf_counter(), time.process_time()
    result = find_subnetwork(model, config, folder, data=data)
    return result.metrics, time.perf_counter() - start, time.process_time() - start_cpu


def _row(metrics: dict) -> dict:
    """What decides whether two masks are the same result: size, the reported numbers, the rule."""
    change, size, sel = metrics["change"], metrics["size"], metrics["selection"]
    return {
        "units": size["n_subnetwork"],
        "sparsity": round(metrics["sparsity"], 5),
        "target_dppl": round(change["target"]["dppl"], 1),
        "target_top10": round(metrics["remaining"]["target"]["top10"], 1),
        "target_paraphrase_top10": round(metrics["remaining"]["target_paraphrase"]["top10"], 1),
        "control_new_dppl": round(change["control_new"]["dppl"], 2),
        "control_dppl": round(change["control"]["dppl"], 2),
        "lm_dppl": round(change["lm"]["dppl"], 2),
        "steps_run": sel["steps_run"],
        "chosen_step": sel["chosen_step"],
        "rule_met": sel["rule_met"],
        "seconds": {k: round(v, 1) for k, v in metrics["seconds"].items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--granularity", choices=("weight", "neuron"), default="weight")
    parser.add_argument("--target", default="isa:animal")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="run folders (default: a temporary folder)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = circuitcut.load_model("smollm2", device="cpu")
    new = preset("weights" if args.granularity == "weight" else "default", target=args.target, seed=args.seed)
    full = replace(new, **FULL)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-subnetwork-"))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data = run_data(model, new, out)  # the facts do not depend on what the two paths change
    data_s = time.perf_counter() - start

    new_metrics, new_wall, new_cpu = _timed(model, new, out / "new", data)
    new_peak = _peak_mb()
    full_metrics, full_wall, full_cpu = _timed(model, full, out / "full", data)
    emit({
        "machine": machine(),
        "target": args.target,
        "granularity": args.granularity,
        "seed": args.seed,
        "data_s": round(data_s, 1),
        "ratio_wall": round(new_wall / full_wall, 3),
        "ratio_cpu": round(new_cpu / full_cpu, 3),
        "new": {"wall_s": round(new_wall, 1), "cpu_s": round(new_cpu, 1), **_row(new_metrics)},
        "full": {"wall_s": round(full_wall, 1), "cpu_s": round(full_cpu, 1), **_row(full_metrics)},
        "peak_rss_mb": {"after_new": round(new_peak), "after_full": round(_peak_mb())},
        "prefix_mb": round(new_metrics["prefix"]["megabytes"], 1),
        "folders": str(out),
    })


if __name__ == "__main__":
    main()

"""Remove a neuron subnetwork by setting its neurons to their mean activation instead of zero.

Where does a neuron mask's control damage come from: the neurons' average output, which every prompt
receives (zeroing it shifts all predictions), or what they carry about particular inputs? Mean ablation
keeps the average and removes the rest (``fill="mean"`` of :class:`~circuitcut.masks.Mask`). The means are
taken over the run's training ControlLM windows (never evaluated on); both removals are scored on the run's
evaluation data (whole-tail dPPL, top-10):

    python scripts/mean_ablation.py RUN_DIR [RUN_DIR ...] [--threads N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from circuitcut.masks import mean_activations
from circuitcut.models import load_model
from circuitcut.subnetwork import SubnetworkResult, run_data
from circuitcut.subnetwork.evaluation import changes, evaluate_model
from circuitcut.threads import set_threads

DATASETS = ("target", "target_paraphrase", "control_new", "lm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", help="finished neuron-level `circuitcut subnet` run folders")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the cores left free)")
    args = parser.parse_args()
    set_threads(args.threads)
    model = load_model("smollm2")
    for run_dir in args.run_dirs:
        result = SubnetworkResult.load(run_dir, model)
        if result.config.granularity != "neuron":
            raise SystemExit(f"{run_dir} holds a {result.config.granularity} mask; mean ablation is of neurons.")
        data = run_data(model, result.config, Path(run_dir))
        mean_filled = result.mask.with_means(mean_activations(model, data.lm, list(result.mask.by_kind())))
        original = evaluate_model(model, data)
        print(f"{run_dir} ({result.config.target}, {result.mask.n_removed():,} {result.config.units}):")
        for label, mask in (("zero", result.mask), ("mean", mean_filled)):
            removed = evaluate_model(model, data, mask)
            change = changes(original, removed)
            cells = [f"{name} dPPL {change[name]['dppl']:+.1f} %"
                     + (f" (top-10 {removed[name]['top10']:.0f} %)" if name != "lm" else "") for name in DATASETS]
            print(f"  {label} ablation: " + ", ".join(cells))


if __name__ == "__main__":
    main()

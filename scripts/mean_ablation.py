"""Remove a neuron subnetwork by setting its neurons to their mean activation instead of zero.

Where does a neuron mask's control damage come from: the neurons' average output, which every prompt
receives (zeroing it shifts all predictions), or what they carry about particular inputs? Mean ablation
keeps the average and removes the rest. The means are taken over the run's training ControlLM windows
(never evaluated on); both removals are scored on the run's evaluation data (whole-tail dPPL, top-10):

    python scripts/mean_ablation.py RUN_DIR [RUN_DIR ...] [--threads N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from circuitcut.models import load_model
from circuitcut.subnetwork import SubnetworkResult, run_data
from circuitcut.subnetwork.evaluation import changes, evaluate_model
from circuitcut.threads import set_threads

DATASETS = ("target", "target_paraphrase", "control_new", "lm")


@torch.inference_mode()
def mean_activations(model, sites: list[str], windows: Tensor, batch_size: int = 8) -> dict[str, Float[Tensor, " neuron"]]:
    """Each site's activation averaged over every position of ``windows``."""
    sums: dict[str, Tensor] = {}

    def adder(name: str):
        def hook(act, hook):
            sums[name] = sums.get(name, 0) + act.float().sum((0, 1))
        return hook

    with model.hooks(fwd_hooks=[(name, adder(name)) for name in sites]):
        for batch in windows.split(batch_size):
            model(batch)
    return {name: total / windows.numel() for name, total in sums.items()}


def replacing(subnetwork: dict[str, Bool[Tensor, " neuron"]], values: dict[str, Float[Tensor, " neuron"]]) -> list:
    """Hooks that set the subnetwork's neurons at each site to ``values`` (zeros: the usual removal)."""
    def setter(keep: Tensor, value: Tensor):
        def hook(act, hook):
            return act * keep.to(act.dtype) + value.to(act.dtype)
        return hook

    return [(name, setter(~mask, values[name] * mask)) for name, mask in subnetwork.items() if mask.any()]


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
        means = mean_activations(model, list(result.mask.removed), data.lm)
        original = evaluate_model(model, data)
        zeroed = evaluate_model(model, data, result.mask)  # the usual removal
        with torch.inference_mode(), model.hooks(fwd_hooks=replacing(result.mask.removed, means)):
            averaged = evaluate_model(model, data)
        print(f"{run_dir} ({result.config.target}, {result.mask.n_removed():,} {result.config.units}):")
        for label, removed in (("zero", zeroed), ("mean", averaged)):
            change = changes(original, removed)
            cells = [f"{name} dPPL {change[name]['dppl']:+.1f} %"
                     + (f" (top-10 {removed[name]['top10']:.0f} %)" if name != "lm" else "") for name in DATASETS]
            print(f"  {label} ablation: " + ", ".join(cells))


if __name__ == "__main__":
    main()

"""Remove, as whole neurons, the feed-forward neurons a weight subnetwork touches.

Does a weight mask's effect need weight granularity? A neuron owns 3 x d_model weights (a row of gate
and in, a column of out); removing the whole neuron cuts every connection, where the weight mask cuts
a few. This evaluates the touched neurons as a neuron subnetwork, against random neurons of the same
count per layer, on the run's own evaluation data:

    python scripts/touched_neurons.py RUN_DIR [--random-seeds 1] [--threads N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from circuitcut.models import load_model
from circuitcut.subnetwork import SubnetworkResult, evaluate_subnetwork, format_report, run_data
from circuitcut.threads import set_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a finished weight-level `circuitcut subnet` run folder")
    parser.add_argument("--random-seeds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the cores left free)")
    args = parser.parse_args()
    set_threads(args.threads)
    model = load_model("smollm2")
    result = SubnetworkResult.load(args.run_dir, model)
    neurons = result.mask.touched_neurons()  # refuses a neuron-level run before anything slow
    data = run_data(model, result.config, Path(args.run_dir))
    print(f"{result.mask.n_removed():,} weights touch {neurons.n_removed():,} feed-forward neurons; "
          "removing those neurons whole:")
    metrics = evaluate_subnetwork(model, neurons, data, random_seeds=args.random_seeds)
    print(format_report({**metrics, "target": result.config.target}))


if __name__ == "__main__":
    main()

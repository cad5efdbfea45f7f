"""Greedy selection on a finished neuron-level run's facts, to see whether its neuron front is the optimizer's.

Each neuron mask circuitcut learns sits on one front of target suppression against control damage.
Is the front the learned optimizer's (Gumbel noise, Adam, the loss weights) or the neurons'? This picks
neurons greedily instead (:mod:`circuitcut.greedy`), on the same training facts, and scores the mask after
each step on the run's evaluation data: target top-10 on its training and paraphrased rows, whole-tail
dPPL of the trained-on and never-seen ControlKG facts and of ControlLM. Sweep ``--control-weights`` to
trace the front; each finished curve is written to ``--out`` at once.

``--oracle`` keeps the never-seen control facts themselves (the evaluation's ``control_new``) in
place of the training controls: a deliberate leak, which gives the best trade-off this selection can
reach on the reported control measure; the trained-on facts then play the never-seen ones.

    python scripts/greedy_neurons.py RUN_DIR [--control-weights 30] [--steps 6] [--per-step 5] \\
        [--candidates 15] [--lm-weight W] [--oracle] [--out FILE.json] [--threads N]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from circuitcut.greedy import CURVE_SETS, curve_point, greedy_masks
from circuitcut.models import load_model
from circuitcut.subnetwork import SubnetworkResult, run_data, saved_config
from circuitcut.subnetwork.evaluation import evaluate_model
from circuitcut.threads import set_threads


def _line(point: dict) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in point.items() if isinstance(v, float | int))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a neuron-level `circuitcut subnet` run folder (its config and data)")
    parser.add_argument("--control-weights", default="30", help="comma-separated control weights, one curve each")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--per-step", type=int, default=5)
    parser.add_argument("--candidates", type=int, default=15,
                        help="shortlist per step, each removed for real (0: first-order scores alone)")
    parser.add_argument("--lm-weight", type=float, default=0.0,
                        help="add this times the NLL of 4 training text windows to the kept cost (0: facts only)")
    parser.add_argument("--oracle", action="store_true",
                        help="keep the evaluation's never-seen control facts instead of the training controls (a leak)")
    parser.add_argument("--out", default=None, help="write the curves as JSON here")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the cores left free)")
    args = parser.parse_args()
    set_threads(args.threads)
    model = load_model("smollm2")
    folder = Path(args.run_dir)
    config = saved_config(folder)
    if config is None:
        raise SystemExit(f"{folder} holds no config.json: give a `circuitcut subnet` run folder.")
    if config.granularity != "neuron":
        raise SystemExit(f"{folder} is a {config.granularity}-level run; greedy attribution picks neurons.")
    data = run_data(model, config, folder)
    if args.oracle:
        data = replace(data, control=data.eval_kg["control_new"])
    original = evaluate_model(model, data, sets=CURVE_SETS)
    out = {"run": str(folder), "target": config.target, "oracle": args.oracle, "lm_weight": args.lm_weight,
           "curves": {}}
    if (folder / "metrics.json").exists():
        learned = SubnetworkResult.load(folder, model).mask
        out["learned"] = curve_point(model, learned, data, original)
        print(f"learned mask: {_line(out['learned'])}")
    for weight in (float(w) for w in args.control_weights.split(",")):
        print(f"control weight {weight}:")
        curve = []
        for mask in greedy_masks(model, config, data, control_weight=weight, steps=args.steps,
                                 per_step=args.per_step, candidates=args.candidates, lm_weight=args.lm_weight):
            curve.append(curve_point(model, mask, data, original))
            print(f"  {_line(curve[-1])}", flush=True)
        out["curves"][str(weight)] = curve
        if args.out:
            Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

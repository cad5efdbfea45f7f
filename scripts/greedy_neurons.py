"""Greedy attribution: another way to pick neurons on a run's facts, to see whether its neuron front is the optimizer's.

Each neuron mask circuitcut learns sits on one front of target suppression against control damage.
Is the front the learned optimizer's (Gumbel noise, Adam, the loss weights) or the neurons'? This
picks neurons greedily instead, on the same training facts, by

    score_i = rise of the target's tail NLL - control_weight * max(rise of the kept cost, 0)

when neuron i is removed, the target counted, like the learned margin term, only over rows whose
first tail token is still in the top ``suppress_rank``; the kept cost is the control facts' tail NLL
(plus ``--lm-weight`` times that of a few training text windows). A first-order estimate of each rise
(``-dL/dkeep_i``; ``keep`` scales the neuron's activation, 1 -> 0 is the removal) shortlists
``--candidates`` neurons; each is then removed for real and the ``per_step`` best real scores join
the removed set (gradients and trials are taken on the model without the neurons removed so far).
After each step the mask is scored on the run's evaluation data: target top-10 on its training and
paraphrased rows, whole-tail dPPL of the trained-on and never-seen ControlKG facts and of ControlLM.
Sweep ``--control-weights`` to trace the front; each finished curve is written to ``--out`` at once.

``--oracle`` keeps the never-seen control facts themselves (the evaluation's ``control_new``) in
place of the training controls: a deliberate leak, which gives the best trade-off this selection can
reach on the reported control measure; the trained-on facts then play the never-seen ones.

    python scripts/greedy_neurons.py RUN_DIR [--control-weights 30] [--steps 6] [--per-step 5] \\
        [--candidates 15] [--lm-weight W] [--oracle] [--out FILE.json] [--threads N]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.data.kg import KGBatch
from circuitcut.masks import Mask
from circuitcut.models import load_model
from circuitcut.robustness.examples import Windows
from circuitcut.sites import ModelShape
from circuitcut.subnetwork import (
    SubnetworkConfig, SubnetworkData, SubnetworkResult, run_data, saved_config,
)
from circuitcut.subnetwork.evaluation import changes, evaluate_model
from circuitcut.subnetwork.neuron_masks import NeuronRemover, neuron_sites
from circuitcut.threads import set_threads

CURVE_SETS = ("target", "target_paraphrase", "control", "control_new", "lm")


Keep = dict[str, Float[Tensor, " neuron"]]


def mean_nll(model: TransformerBridge, keep: Keep, what: KGBatch | Int[Tensor, "window pos"]) -> Float[Tensor, ""]:
    """Mean tail NLL of a KG batch, or mean next-token NLL of text windows, on the model scaled by ``keep``."""
    with NeuronRemover(model, keep):
        if isinstance(what, KGBatch):
            return what.tail_nll(model(what.tokens[:, :-1]).float()).mean()
        return Windows(what).loss(model, torch.arange(len(what)))


@torch.no_grad()
def pushed_rows(model: TransformerBridge, keep: Keep, batch: KGBatch, suppress_rank: int | None) -> KGBatch:
    """The rows the margin term still pushes: first tail token within ``suppress_rank`` (all rows: ``None``)."""
    if suppress_rank is None:
        return batch
    with NeuronRemover(model, keep):
        pushed = batch.score(model(batch.tokens[:, :-1])).rank <= suppress_rank
    return batch[pushed.nonzero().flatten()]


def removal_effects(model: TransformerBridge, keep: Keep, loss: Callable[[Keep], Tensor]) -> tuple[Tensor, Keep]:
    """``loss(keep)`` and the first-order rise of it when each kept neuron is removed: ``-dL/dkeep``
    (zeros where the loss does not depend on ``keep``, e.g. no target row left to push)."""
    keep = {name: k.detach().clone().requires_grad_() for name, k in keep.items()}
    value = loss(keep)
    if not value.requires_grad:
        return value, {name: torch.zeros_like(k) for name, k in keep.items()}
    grads = torch.autograd.grad(value, list(keep.values()))
    return value.detach(), {name: -g for name, g in zip(keep, grads)}


def greedy_step(
    model: TransformerBridge,
    removed: dict[str, Bool[Tensor, " neuron"]],
    data: SubnetworkData,
    *,
    control_weight: float,
    per_step: int,
    suppress_rank: int | None,
    candidates: int = 0,
    lm_weight: float = 0.0,
    lm_windows: int = 4,
) -> dict[str, Bool[Tensor, " neuron"]]:
    """``removed`` with the ``per_step`` kept neurons of best score added (across all sites).

    The kept cost is the control facts' mean tail NLL plus ``lm_weight`` times the mean NLL of the
    first ``lm_windows`` training text windows. With ``candidates`` > 0, the first-order score only
    shortlists that many neurons; each is then removed for real (one at a time, beside those removed
    so far) and the best real scores win: a neuron with large activations can cost far more than its
    gradient says.
    """
    names, sizes = list(removed), [len(r) for r in removed.values()]
    flat_removed = torch.cat(list(removed.values()))
    keep = {name: (~r).float() for name, r in removed.items()}
    pushed = pushed_rows(model, keep, data.target, suppress_rank)
    text = data.lm[:lm_windows]

    def target(keep: Keep) -> Tensor:
        return mean_nll(model, keep, pushed) if len(pushed) else torch.zeros(())

    def kept(keep: Keep) -> Tensor:
        return mean_nll(model, keep, data.control) + (lm_weight * mean_nll(model, keep, text) if lm_weight else 0)

    (base_t, rise_t), (base_k, rise_k) = removal_effects(model, keep, target), removal_effects(model, keep, kept)
    first_order = torch.cat([rise_t[n] - control_weight * rise_k[n].clamp(min=0) for n in names])
    first_order = first_order.masked_fill(flat_removed, -torch.inf)
    if candidates > 0:
        shortlist = first_order.topk(candidates).indices
        with torch.no_grad():
            real = []
            for i in shortlist.tolist():
                trial = (~flat_removed).float()
                trial[i] = 0
                trial_keep = dict(zip(names, trial.split(sizes)))
                cost = (kept(trial_keep) - base_k).clamp(min=0)
                real.append(float(target(trial_keep) - base_t - control_weight * cost))
        picked = shortlist[torch.tensor(real).topk(per_step).indices]
    else:
        picked = first_order.topk(per_step).indices
    flat = flat_removed.clone()
    flat[picked] = True
    return dict(zip(names, flat.split(sizes)))


def curve_point(model: TransformerBridge, mask: Mask, data: SubnetworkData, original: dict) -> dict:
    """Target top-10 (training, paraphrased) and control dPPL (trained-on and never-seen facts, text) of
    the model without ``mask``, and the neurons it removes."""
    remaining = evaluate_model(model, data, mask, sets=CURVE_SETS)
    change = changes({n: original[n] for n in remaining}, remaining)
    return {
        "neurons": mask.n_removed(),
        "per_layer": {layer: n["subnetwork"] for layer, n in mask.per_layer().items() if n["subnetwork"]},
        "target_top10": remaining["target"]["top10"],
        "paraphrase_top10": remaining["target_paraphrase"]["top10"],
        "target_dppl": change["target"]["dppl"],
        "control_dppl": change["control"]["dppl"],
        "control_new_dppl": change["control_new"]["dppl"],
        "lm_dppl": change["lm"]["dppl"],
        "removed": {name: m.nonzero().flatten().tolist() for name, m in mask.removed.items() if m.any()},
    }


def _line(point: dict) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in point.items() if isinstance(v, float | int))


def greedy_curve(
    model: TransformerBridge, config: SubnetworkConfig, data: SubnetworkData, *, control_weight: float,
    steps: int, per_step: int, candidates: int, lm_weight: float, original: dict,
) -> list[dict]:
    """The curve of :func:`curve_point` after each greedy step."""
    shape = ModelShape.of(model)
    sites = neuron_sites(shape, list(config.resolved_layers(shape)), config.neuron_kinds)
    removed = {name: torch.zeros(size, dtype=torch.bool) for name, size in sites.items()}
    curve = []
    for _ in range(steps):
        removed = greedy_step(model, removed, data, control_weight=control_weight, per_step=per_step,
                              suppress_rank=config.suppress_rank, candidates=candidates, lm_weight=lm_weight)
        mask = Mask(shape, "neuron", removed)
        curve.append(curve_point(model, mask, data, original))
        print(f"  {_line(curve[-1])}", flush=True)
    return curve


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
        curve = greedy_curve(model, config, data, control_weight=weight, steps=args.steps, per_step=args.per_step,
                             candidates=args.candidates, lm_weight=args.lm_weight, original=original)
        out["curves"][str(weight)] = curve
        if args.out:
            Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

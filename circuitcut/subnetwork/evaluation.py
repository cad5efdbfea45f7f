"""How the remaining model (original minus the subnetwork) compares with the original, and with random masks.

Per dataset (TargetKG on training templates and held-out paraphrases, ControlKG likewise,
ControlLM windows): perplexity, top-1/5/10 accuracy and rank of the tail, and
``dPPL = (PPL_remaining - PPL_original) / PPL_original * 100`` (METRICS.md). KG perplexity is that
of the first tail token (the token the objective acts on); ``ppl_tail`` averages over all tail tokens.
The baseline removes random masks with exactly as many units per site as the subnetwork.
"""

from __future__ import annotations

import math
import statistics
from contextlib import nullcontext

import torch
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.data.kg import KGBatch, score_pairs
from circuitcut.evaluate import evaluate_tokens
from circuitcut.subnetwork.data import SubnetworkData
from circuitcut.subnetwork.mask import SubnetworkMask

#: metrics whose relative change is reported, and the name of that change
_CHANGES = {"ppl": "dppl", "ppl_tail": "dppl_tail", "top1": "dtop1"}


@torch.inference_mode()
def kg_metrics(model: TransformerBridge, batch: KGBatch, batch_size: int = 64) -> dict:
    """Tail perplexity (first token, and all tail tokens), top-k accuracy (%) and rank on a KG batch."""
    scores = score_pairs(model, batch, batch_size)
    rank = scores.rank.float()
    return {
        "ppl": math.exp(-scores.logprob.mean().item()),
        "ppl_tail": math.exp(-scores.tail_logprob.mean().item()),
        "top1": 100 * (scores.rank <= 1).float().mean().item(),
        "top5": 100 * (scores.rank <= 5).float().mean().item(),
        "top10": 100 * (scores.rank <= 10).float().mean().item(),
        "mean_rank": rank.mean().item(),
        "median_rank": rank.median().item(),
        "n": len(batch),
    }


def evaluate_model(model: TransformerBridge, data: SubnetworkData, mask: SubnetworkMask | None = None) -> dict:
    """Metrics of the original model (``mask=None``) or of the model without ``mask``'s subnetwork."""
    out = {}
    with mask.removed(model) if mask is not None else nullcontext():
        for name, batch in data.eval_kg.items():
            if len(batch):
                out[name] = kg_metrics(model, batch)
        if data.eval_lm is not None:
            lm = evaluate_tokens(model, data.eval_lm)
            out["lm"] = {"ppl": lm.perplexity, "top1": lm.top1, "top10": lm.top10, "loss": lm.loss, "n": lm.n_tokens}
    return out


def changes(original: dict, remaining: dict) -> dict:
    """Relative change in percent of the original, per dataset: dppl, dppl_tail, dtop1."""
    return {
        name: {
            delta: 100 * (remaining[name][key] - before[key]) / before[key]
            for key, delta in _CHANGES.items()
            if key in before and before[key]
        }
        for name, before in original.items()
    }


def evaluate_subnetwork(
    model: TransformerBridge,
    mask: SubnetworkMask,
    data: SubnetworkData,
    *,
    random_seeds: int = 3,
    original: dict | None = None,
) -> dict:
    """Everything metrics.json reports: sizes, original vs remaining, and the random baseline.

    ``random`` holds, per dataset and change, the mean and standard deviation over seeds (and
    each seed's values); ``original`` may be passed to skip re-evaluating the unmasked model.
    """
    original = original if original is not None else evaluate_model(model, data)
    remaining = evaluate_model(model, data, mask)
    per_seed = [evaluate_model(model, data, mask.random_like(seed)) for seed in range(random_seeds)]
    random_changes = [changes(original, r) for r in per_seed]
    return {
        "model": mask.shape.name,
        "sparsity": mask.sparsity(),
        "size": mask.summary(),
        "original": original,
        "remaining": remaining,
        "change": changes(original, remaining),
        "random": {
            "seeds": list(range(random_seeds)),
            "change": _spread(random_changes),
            "per_seed": per_seed,
        },
    }


def _spread(runs: list[dict]) -> dict:
    """Mean, standard deviation and values over seeds of each dataset's changes."""
    if not runs:
        return {}
    out = {}
    for name, deltas in runs[0].items():
        out[name] = {}
        for delta in deltas:
            values = [r[name][delta] for r in runs]
            out[name][delta] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "values": values,
            }
    return out


def compare(a: SubnetworkMask, b: SubnetworkMask) -> dict:
    """Jaccard overlap of two subnetworks (overall, per layer, per site), with their sizes."""
    return {**a.jaccard(b), "size_a": a.n_subnetwork(), "size_b": b.n_subnetwork()}


def format_report(metrics: dict) -> str:
    """A plain-text table of a run's metrics: per dataset, the remaining model against the random masks."""
    lines = [
        f"target {metrics.get('target', '?')} on {metrics['model']}: sparsity {metrics['sparsity']:.2f} % "
        f"({metrics['size']['n_subnetwork']:,} of {metrics['size']['n_units']:,} {metrics['size']['granularity']} units in the subnetwork)",
        f"{'dataset':16s} {'PPL orig':>9s} {'PPL rem':>10s} {'dPPL %':>10s} {'random dPPL %':>18s} "
        f"{'top1 orig':>9s} {'top1 rem':>9s} {'top1 rand':>9s}",
    ]
    for name, before in metrics["original"].items():
        after, rand = metrics["remaining"][name], metrics["random"]["change"].get(name, {})
        rand_ppl = rand.get("dppl", {"mean": float("nan"), "std": float("nan")})
        rand_top1 = statistics.fmean(r[name]["top1"] for r in metrics["random"]["per_seed"]) if metrics["random"]["per_seed"] else float("nan")
        lines.append(
            f"{name:16s} {before['ppl']:9.2f} {after['ppl']:10.2f} {metrics['change'][name]['dppl']:+10.1f} "
            f"{rand_ppl['mean']:+10.1f} ± {rand_ppl['std']:5.1f} {before['top1']:9.1f} {after['top1']:9.1f} {rand_top1:9.1f}"
        )
    return "\n".join(lines)

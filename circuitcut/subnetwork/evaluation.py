"""How the remaining model (original minus the subnetwork) compares with the original, and with random masks.

Per dataset (:data:`~circuitcut.subnetwork.data.EVAL_SETS` and ControlLM windows, ``lm``):
perplexity, top-1/5/10 accuracy and rank of the tail, and
``dPPL = (PPL_remaining - PPL_original) / PPL_original * 100`` (docs/metrics.md). KG perplexity ``ppl``
is over the whole tail (all its tokens, the paper's); ``ppl_first`` is that of the first tail token
(the token the objective acts on), a secondary figure. The baseline removes random masks with
exactly as many units per site as the subnetwork; *criticality* says how far the learned mask is
from them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection
from contextlib import nullcontext

import torch
from torch.nn.utils import parametrize
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.data.kg import KGBatch, score_pairs
from circuitcut.evaluate import evaluate_tokens, percent
from circuitcut.masks import Mask
from circuitcut.subnetwork.data import SubnetworkData

#: metrics whose relative change is reported, and the name of that change
_CHANGES = {"ppl": "dppl", "ppl_first": "dppl_first", "top1": "dtop1", "top10": "dtop10"}

TEXT_BATCH = 2
"""ControlLM windows per forward when a run scores text (validation, evaluation). A window's 128 x 49,152 float32
logits are 25 MB and the log-sum-exp takes a temporary as large: 100 MB at 2 windows, 400 MB at ``evaluate_tokens``'
default 8, which during a weight run's validation came on top of its scores, Adam moments and masked weights and
made its peak."""


@torch.inference_mode()
def kg_metrics(model: TransformerBridge, batch: KGBatch, batch_size: int = 64) -> dict:
    """Tail perplexity (all tail tokens; first token), top-k accuracy (%) and rank on a KG batch."""
    scores = score_pairs(model, batch, batch_size)
    rank = scores.rank.float()
    return {
        "ppl": math.exp(-scores.tail_logprob.mean().item()),
        "ppl_first": math.exp(-scores.logprob.mean().item()),
        "top1": percent(scores.rank <= 1),
        "top5": percent(scores.rank <= 5),
        "top10": percent(scores.rank <= 10),
        "mean_rank": rank.mean().item(),
        "median_rank": rank.median().item(),
        "n": len(batch),
    }


def evaluate_model(
    model: TransformerBridge,
    data: SubnetworkData,
    mask: Mask | None = None,
    sets: Collection[str] | None = None,
) -> dict:
    """Metrics of the original model (``mask=None``) or of the model without ``mask``'s subnetwork, on
    every evaluation dataset or only on ``sets`` (names of :data:`~circuitcut.subnetwork.data.EVAL_SETS` and ``lm``)."""
    out = {}
    # parametrize.cached: a weight mask's W * keep is formed once for every batch, not per forward
    with mask.remaining(model) if mask is not None else nullcontext(), parametrize.cached():
        for name, batch in data.eval_kg.items():
            if len(batch) and (sets is None or name in sets):
                out[name] = kg_metrics(model, batch)
        if data.eval_lm is not None and (sets is None or "lm" in sets):
            lm = evaluate_tokens(model, data.eval_lm, batch_size=TEXT_BATCH)
            out["lm"] = {"ppl": lm.perplexity, "top1": lm.top1, "top10": lm.top10, "loss": lm.loss, "n": lm.n_tokens}
    return out


def changes(original: dict, remaining: dict) -> dict:
    """Relative change in percent of the original, per dataset: dppl, dppl_first, dtop1, dtop10."""
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
    mask: Mask,
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
    change = changes(original, remaining)
    spread = _spread(random_changes)
    return {
        "model": mask.shape.name,
        "sparsity": mask.sparsity(),
        "size": mask.summary(),
        "original": original,
        "remaining": remaining,
        "change": change,
        "random": {
            "seeds": list(range(random_seeds)),
            "change": spread,
            "per_seed": per_seed,
        },
        "criticality": criticality(change, spread),
    }


def criticality(change: dict, random_change: dict) -> dict:
    """Per dataset, how far the learned mask's whole-tail dPPL is from random masks of its size:
    ``excess`` = learned - random mean (percentage points), ``z`` = excess / random sd (None with one seed).

    A critical subnetwork has a large positive excess on TargetKG and a negative or small one on controls.
    """
    out = {}
    for name, delta in change.items():
        rand = random_change.get(name, {}).get("dppl")
        if rand is None or "dppl" not in delta:
            continue
        excess = delta["dppl"] - rand["mean"]
        out[name] = {"learned": delta["dppl"], "random_mean": rand["mean"], "random_std": rand["std"],
                     "excess": excess, "z": excess / rand["std"] if rand["std"] > 0 else None}
    return out


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


def compare(a: Mask, b: Mask) -> dict:
    """Jaccard overlap of two subnetworks (overall, per layer, per site), with their sizes."""
    return {**a.jaccard(b), "size_a": a.n_removed(), "size_b": b.n_removed()}

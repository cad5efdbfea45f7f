"""What removing one family's subnetwork does to the facts of another: functional comparisons that need the model.

* :func:`cross_criticality`: the model without A's subnetwork, scored on B's TargetKG facts (whole-tail dPPL and
  top-10), for every pair, beside random masks of A's size per site;
* :func:`union_effect`: does the union of two masks (mask algebra, :meth:`~circuitcut.masks.Mask.__or__`) remove
  both families, and does either mask alone?
* :func:`verify`: one entry re-evaluated on the model: its stored TargetKG and ControlKG dPPL, reproduced or not.

B's facts are those its run reported on (its facts.json ``target`` lines, on their chosen templates), encoded as
the run encoded them, so A = B gives the run's own TargetKG figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.atlas.compare import targets_of
from circuitcut.data.kg import KGBatch, collate, tokenize_pairs
from circuitcut.data.kg.batch import _pad_id
from circuitcut.subnetwork.evaluation import changes, kg_metrics

if TYPE_CHECKING:
    from circuitcut.atlas.atlas import Atlas
    from circuitcut.masks import Mask


def fact_batch(lines: Sequence[str], tokenizer) -> KGBatch:
    """Facts as facts.json writes them (``prompt|tail (rank r, ppl p)``) as a batch to score."""
    if not lines:
        raise ValueError("No facts to score: the run's facts.json holds no target facts; rebuild its atlas entry.")
    texts = [line.rsplit(" (rank ", 1)[0].split("|", 1) for line in lines]
    prompts, tails = [p for p, _ in texts], [t for _, t in texts]
    return collate(tokenize_pairs(tokenizer, prompts, tails), pad_id=_pad_id(tokenizer), prompts=prompts,
                   continuations=tails)


def _score(model: TransformerBridge, mask: Mask | None, batches: dict[str, KGBatch]) -> dict[str, dict]:
    from contextlib import nullcontext

    with mask.remaining(model) if mask is not None else nullcontext():
        return {name: kg_metrics(model, batch) for name, batch in batches.items()}


def _row(removed: str, original: dict, after: dict, name: str) -> dict:
    return {"removed": removed, "scored": name, "dppl": changes(original, after)[name]["dppl"],
            "top10": after[name]["top10"], "top10_original": original[name]["top10"]}


def cross_criticality(model: TransformerBridge, atlas: Atlas, targets: Sequence[str] | None = None,
                      granularity: str = "weight", seed: int = 0, random_seeds: int = 1) -> pd.DataFrame:
    """One row per (removed A, scored B): B's TargetKG dPPL and top-10 without A's subnetwork, and the mean dPPL
    without ``random_seeds`` random masks of A's size per site (``dppl_random``)."""
    names = targets_of(atlas, targets, granularity, seed)
    batches = {b: fact_batch(atlas.facts(b, granularity, seed), model.tokenizer) for b in names}
    original = _score(model, None, batches)
    rows = []
    for a in names:
        mask = atlas.mask(a, granularity, seed, model=model)
        after = _score(model, mask, batches)
        randoms = [_score(model, mask.random_like(s), batches) for s in range(random_seeds)]
        for b in names:
            random = [changes(original, r)[b]["dppl"] for r in randoms]
            rows.append({**_row(a, original, after, b),
                         "dppl_random": sum(random) / len(random) if random else float("nan")})
    return pd.DataFrame(rows)


def union_effect(model: TransformerBridge, atlas: Atlas, a: str, b: str, granularity: str = "weight",
                 seed: int = 0) -> pd.DataFrame:
    """Both families' TargetKG dPPL and top-10 without A's mask, B's, and their union (``removed``: the two
    targets' names, or ``A | B``)."""
    a, b = atlas.target(a), atlas.target(b)
    masks = {a: atlas.mask(a, granularity, seed, model=model), b: atlas.mask(b, granularity, seed, model=model)}
    masks[f"{a} | {b}"] = masks[a] | masks[b]
    batches = {t: fact_batch(atlas.facts(t, granularity, seed), model.tokenizer) for t in (a, b)}
    original = _score(model, None, batches)
    return pd.DataFrame([_row(removed, original, after, name) for removed, mask in masks.items()
                         for after in [_score(model, mask, batches)] for name in batches])


VERIFIED = ("target", "control", "control_new")
"""The datasets :func:`verify` re-scores: TargetKG, the trained-on ControlKG and the never-seen ControlKG."""


def verify(model: TransformerBridge, atlas: Atlas, target: str, granularity: str = "weight", seed: int = 0,
           tolerance: float = 0.01) -> pd.DataFrame:
    """Re-evaluate one atlas entry on ``model``: per dataset of :data:`VERIFIED`, the stored and the measured
    whole-tail dPPL, and ``ok`` when they agree within ``tolerance`` (relative, or 0.05 points near 0). A control
    set the run's facts do not list (runs on custom data) is left out.

    A model other than the one the masks were found on is refused (:meth:`~circuitcut.masks.Mask.check_model`);
    the same model on another machine or torch agrees to far better than 1 %."""
    run = atlas.run(target, granularity, seed)
    mask = atlas.mask(run["target"], granularity, seed, model=model)
    held = [name for name in VERIFIED if name == "target" or atlas.facts(run["target"], granularity, seed, name)]
    batches = {name: fact_batch(atlas.facts(run["target"], granularity, seed, name), model.tokenizer) for name in held}
    measured = changes(_score(model, None, batches), _score(model, mask, batches))
    rows = []
    for name in held:
        stored, now = run["metrics"]["change"][name]["dppl"], measured[name]["dppl"]
        rows.append({"dataset": name, "stored": stored, "measured": now,
                     "ok": abs(now - stored) <= max(tolerance * abs(stored), 0.05)})
    return pd.DataFrame(rows)

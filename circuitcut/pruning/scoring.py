"""How selective pruning ranks neurons: ``importance(forget) / (importance(retain) + eps)`` (the reference code's
direction; the paper's Definition 2 prints the ratio the other way round; ``|mean(forget) - mean(retain)|`` for
the signed ``mean`` importance), the top of the ranking among the neurons still present, and the random
baseline's scores."""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from circuitcut.sites import Importance, ModelShape, SiteKind
from circuitcut.stats import NeuronStats


def selectivity_scores(
    forget: NeuronStats, retain: NeuronStats, importance: Importance, eps: dict[SiteKind, float]
) -> dict[SiteKind, Float[Tensor, "layer neuron"]]:
    """``importance(forget) / (importance(retain) + eps)``: high means used for forget, not retain.

    A ratio of signed means would rank by sign, so ``mean`` scores ``|mean(forget) - mean(retain)|``, without
    eps, as the taker library's ``score_indices_by_mean`` does."""
    f, r = forget.importance(importance), retain.importance(importance)
    if importance == "mean":
        return {k: (f[k] - r[k]).abs() for k in f}
    return {k: f[k] / (r[k] + eps[k]) for k in f}


def random_scores(shape: ModelShape, kinds, seed: int, step: int) -> dict[SiteKind, Float[Tensor, "layer neuron"]]:
    """Uniform scores of the random baseline at ``step``, drawn on the CPU from ``seed`` and the step alone
    (so a resumed run draws what the whole run would have)."""
    g = torch.Generator().manual_seed(seed * 100_003 + step)
    return {k: torch.rand(shape.n_layers, shape.n_neurons(k), generator=g) for k in kinds}


def top_unpruned(
    scores: Float[Tensor, "layer neuron"], removed: Bool[Tensor, "layer neuron"], n: int
) -> Bool[Tensor, "layer neuron"]:
    """The ``n`` highest-scoring neurons not yet removed, ranked across all layers."""
    flat = scores.flatten().masked_fill(removed.flatten(), float("-inf"))
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    chosen[flat.topk(n).indices] = True
    return chosen.view_as(removed)

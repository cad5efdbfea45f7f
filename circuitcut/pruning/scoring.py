"""How selective pruning ranks neurons: ``importance(forget) / (importance(retain) + eps)`` (the reference code's
direction; the paper's Definition 2 prints the ratio the other way round; ``|mean(forget) - mean(retain)|`` for
the signed ``mean`` importance), each unit's score from its neurons' (a head's from its ``d_head`` neurons'),
the top of the ranking among the units still present, and the random baseline's scores."""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from circuitcut.pruning.config import HeadScore
from circuitcut.sites import Importance, ModelShape, SiteKind, UnitKind, unit_site
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


def unit_scores(
    scores: dict[SiteKind, Float[Tensor, "layer neuron"]], kinds: tuple[UnitKind, ...], shape: ModelShape,
    head_score: HeadScore = "median",
) -> dict[UnitKind, Float[Tensor, "layer unit"]]:
    """Each unit's score from its neurons' scores: a neuron's own; a head's, the median (``head_score="mean"``:
    the mean) of its ``d_head`` neurons' scores.

    As the taker library scores heads: it scores every pre-out neuron, then ``choose_attn_heads_by_mean`` (its
    default mode, despite the name) takes ``torch.quantile(scores, q=0.5, dim=-1)`` over each head's neurons and
    ``choose_attn_heads_by_median`` their mean."""
    out = {}
    for kind in kinds:
        grouped = scores[unit_site(kind)].reshape(shape.n_layers, shape.n_units(kind), shape.unit_size(kind))
        out[kind] = grouped.quantile(0.5, dim=-1) if head_score == "median" else grouped.mean(dim=-1)
    return out


def random_scores(shape: ModelShape, kinds, seed: int, step: int) -> dict[UnitKind, Float[Tensor, "layer unit"]]:
    """Uniform scores of the random baseline's units at ``step``, drawn on the CPU from ``seed`` and the step
    alone (so a resumed run draws what the whole run would have)."""
    g = torch.Generator().manual_seed(seed * 100_003 + step)
    return {k: torch.rand(shape.n_layers, shape.n_units(k), generator=g) for k in kinds}


def next_removal(
    scores: dict[UnitKind, Float[Tensor, "layer unit"]], removed: dict[SiteKind, Bool[Tensor, "layer neuron"]],
    counts: dict[UnitKind, int], shape: ModelShape,
) -> dict[SiteKind, Bool[Tensor, "layer neuron"]]:
    """The neurons of each kind's ``counts[kind]`` highest-scoring units not yet removed (a head: all its neurons)."""
    out = {}
    for kind, n in counts.items():
        size = shape.unit_size(kind)
        gone = removed[unit_site(kind)].reshape(shape.n_layers, -1, size).all(dim=-1)
        out[unit_site(kind)] = top_unpruned(scores[kind], gone, n).repeat_interleave(size, dim=1)
    return out


def top_unpruned(
    scores: Float[Tensor, "layer unit"], removed: Bool[Tensor, "layer unit"], n: int
) -> Bool[Tensor, "layer unit"]:
    """The ``n`` highest-scoring units not yet removed, ranked across all layers."""
    flat = scores.flatten().masked_fill(removed.flatten(), float("-inf"))
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    chosen[flat.topk(n).indices] = True
    return chosen.view_as(removed)

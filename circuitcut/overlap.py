"""How much two unit sets agree: counts per layer and the Jaccard overlap |A & B| / |A | B|.

A unit set is any method's removal as ``site name -> bool tensor`` (``True`` = in the set), the
``removed`` of a :class:`~circuitcut.masks.Mask`: a selective-pruning neuron set and a learned neuron
mask name the same sites, so they compare directly.
"""

from __future__ import annotations

from collections.abc import Mapping

from jaxtyping import Bool
from torch import Tensor

from circuitcut.sites import parse_site

UnitSet = Mapping[str, Bool[Tensor, "..."]]
"""A set of units (weights or neurons) as boolean tensors keyed by site name (``blocks.L.<part>``)."""


def _counts(x: Tensor, y: Tensor) -> tuple[int, int, int, int]:
    both = int((x & y).sum())
    return int(x.sum()) - both, both, int(y.sum()) - both, x.numel()


def overlap_by_layer(a: UnitSet, b: UnitSet) -> dict[int, tuple[int, int, int, int]]:
    """Per layer: (only in a, in both, only in b, units) over the sites the two sets share."""
    shared = a.keys() & b.keys()
    if not shared:
        raise ValueError("The two sets have no site in common: compare masks over the same sites.")
    out: dict[int, list[int]] = {}
    for name in sorted(shared, key=parse_site):
        layer = parse_site(name)[0]
        out[layer] = [s + c for s, c in zip(out.get(layer, [0, 0, 0, 0]), _counts(a[name], b[name]))]
    return {layer: tuple(c) for layer, c in sorted(out.items())}  # type: ignore[misc]


def jaccard(only_a: int, both: int, only_b: int) -> float:
    """|A & B| / |A | B|; two empty sets agree completely."""
    union = only_a + both + only_b
    return both / union if union else 1.0


def chance_jaccard(n_a: int, n_b: int, n: int) -> float:
    """The Jaccard two random sets of these sizes among ``n`` units reach on average (to first order)."""
    both = n_a * n_b / n if n else 0.0
    union = n_a + n_b - both
    return both / union if union else 1.0


def jaccard_summary(a: UnitSet, b: UnitSet) -> dict:
    """The Jaccard of two sets over the sites both cover: overall, per layer and per site."""
    per_layer = overlap_by_layer(a, b)
    only_a, both, only_b, _ = (sum(c) for c in zip(*per_layer.values()))
    return {
        "overall": jaccard(only_a, both, only_b),
        "per_layer": {layer: jaccard(*c[:3]) for layer, c in per_layer.items()},
        "per_site": {name: jaccard(*_counts(m, b[name])[:3]) for name, m in a.items() if name in b},
    }

"""How much two unit sets agree: counts per layer and the Jaccard overlap |A & B| / |A | B|.

A unit set is any method's removal as ``site name -> bool tensor`` (``True`` = in the set):
:func:`as_units` turns a :class:`~circuitcut.masks.NeuronMask` or a learned subnetwork mask into one,
so a selective-pruning neuron set and a learned neuron mask compare directly when they name the
same sites.
"""

from __future__ import annotations

from collections.abc import Mapping

from jaxtyping import Bool
from torch import Tensor

from circuitcut.masks import NeuronMask
from circuitcut.sites import hook_name, parse_site

UnitSet = Mapping[str, Bool[Tensor, "..."]]
"""A set of units (weights or neurons) as boolean tensors keyed by site name (``blocks.L.<part>``)."""


def as_units(units: UnitSet | NeuronMask | object) -> dict[str, Tensor]:
    """Any method's mask as site name -> bool tensor (``True`` = in the set).

    Accepts a plain mapping, a :class:`~circuitcut.masks.NeuronMask` (its removed neurons, one site
    per layer and kind) or anything with a ``subnetwork`` mapping (a learned subnetwork mask).
    """
    if isinstance(units, NeuronMask):
        return {hook_name(kind, layer): removed[layer]
                for kind, removed in units.removed.items() for layer in range(removed.shape[0])}
    units = getattr(units, "subnetwork", units)
    return {name: m.bool().cpu() for name, m in units.items()}


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

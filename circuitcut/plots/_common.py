"""What every view shares: titles and axes, layer axes that stay readable at 30 layers, neuron sets."""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
from jaxtyping import Bool
from torch import Tensor

from circuitcut.masks import NeuronMask
from circuitcut.sites import SiteKind, hook_name

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
FORGET, RETAIN = "#d62728", "#1f77b4"
KIND_NOTES: dict[SiteKind, str] = {
    "mlp": "feed-forward neurons (mlp.hook_post)",
    "attn_v": "attention value neurons (hook_v; with grouped-query attention one feeds every query head of its group)",
    "attn_z": "attention pre-output neurons (hook_z)",
}

UnitSet = Mapping[str, Bool[Tensor, "..."]]
"""A set of units (weights or neurons) as boolean tensors keyed by site name (``blocks.L.<part>``)."""

_SITE = re.compile(r"blocks\.(\d+)\.(.+)")
_PART_LABELS = {
    "attn.q": "q", "attn.k": "k", "attn.v": "v", "attn.o": "o",
    "mlp.gate": "gate", "mlp.in": "in", "mlp.out": "out",
    "mlp.hook_post": "mlp neurons", "attn.hook_v": "attn_v neurons", "attn.hook_z": "attn_z neurons",
}


def finish(fig: go.Figure, title: str, x: str | None = None, y: str | None = None, **layout) -> go.Figure:
    """Title, axis titles and a white template: what every view ends with."""
    fig.update_layout(title=dict(text=title, x=0.01), template="plotly_white", **layout)
    if x is not None:
        fig.update_xaxes(title_text=x)
    if y is not None:
        fig.update_yaxes(title_text=y)
    return fig


def layer_axis(n_layers: int) -> dict:
    """Integer layer ticks, every other one beyond 16 layers so 30 labels do not collide."""
    return dict(tickmode="linear", tick0=0, dtick=1 if n_layers <= 16 else 2, range=[-0.5, n_layers - 0.5])


def site(name: str) -> tuple[int, str]:
    """``blocks.15.mlp.in`` -> ``(15, "mlp.in")``."""
    match = _SITE.fullmatch(name)
    if match is None:
        raise ValueError(f"'{name}' is not a site name of the form blocks.<layer>.<part>.")
    return int(match[1]), match[2]


def part_label(part: str) -> str:
    return _PART_LABELS.get(part, part)


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


def overlap_by_layer(a: UnitSet, b: UnitSet) -> dict[int, tuple[int, int, int, int]]:
    """Per layer: (only in a, in both, only in b, units) over the sites the two sets share."""
    shared = a.keys() & b.keys()
    if not shared:
        raise ValueError("The two sets have no site in common: compare masks over the same sites.")
    out: dict[int, list[int]] = {}
    for name in sorted(shared, key=site):
        x, y = a[name], b[name]
        both = int((x & y).sum())
        counts = (int(x.sum()) - both, both, int(y.sum()) - both, x.numel())
        layer = site(name)[0]
        out[layer] = [s + c for s, c in zip(out.get(layer, [0, 0, 0, 0]), counts)]
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


def compact(values: Tensor) -> np.ndarray:
    """float32 numpy: plotly writes it as base64, which keeps 46k-point HTML files small."""
    return values.detach().float().cpu().numpy()

"""Views of neurons: how many are removed per layer, their importances, and what one of them does
(from :func:`~circuitcut.contexts.top_activating_contexts`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import plotly.graph_objects as go
import torch
from jaxtyping import Bool, Float
from plotly.subplots import make_subplots
from torch import Tensor

from circuitcut.contexts import NeuronContexts
from circuitcut.masks import Mask
from circuitcut.plots._common import PALETTE, compact, finish, layer_axis, log_axis
from circuitcut.sites import DESCRIPTIONS, SiteKind


def neurons_per_layer(masks: Mask | Mapping[str, Mask], title: str | None = None) -> go.Figure:
    """Removed (or masked) neurons per layer and site kind: counts above, percent of the layer below.

    ``masks`` maps a label (``selective``, ``random``, a learned subnetwork ...) to its mask; one
    bar group per label and site kind. Neuron masks only: a weight mask's neurons are ``mask.touched_neurons()``.
    """
    masks = {"removed": masks} if isinstance(masks, Mask) else dict(masks)
    per_kind = {label: mask.by_kind() for label, mask in masks.items()}
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("neurons per layer", "percent of the layer's neurons"))
    kinds = list(dict.fromkeys(k for m in per_kind.values() for k in m))
    n_layers = next(iter(masks.values())).shape.n_layers
    for i, (label, by_kind) in enumerate(per_kind.items()):
        for j, (kind, removed) in enumerate(by_kind.items()):
            counts = removed.sum(dim=1)
            name = f"{label} · {kind}" if len(kinds) > 1 else label
            style = dict(name=name, legendgroup=name, marker_color=PALETTE[i % len(PALETTE)],
                         marker_pattern_shape=("", "/", ".")[j % 3])
            layers = np.arange(removed.shape[0])
            fig.add_bar(x=layers, y=counts.numpy(), row=1, col=1, hovertemplate="layer %{x}: %{y} neurons", **style)
            fig.add_bar(x=layers, y=(100 * counts / removed.shape[1]).numpy(), row=2, col=1, showlegend=False,
                        hovertemplate="layer %{x}: %{y:.2f}% of " + f"{removed.shape[1]} {kind} neurons", **style)
    total = ", ".join(f"{label}: {m.n_removed()}" for label, m in masks.items())
    fig.update_xaxes(**layer_axis(n_layers))
    fig.update_xaxes(title_text="layer", row=2, col=1)
    fig.update_yaxes(title_text="neurons", row=1, col=1)
    fig.update_yaxes(title_text="% of layer", row=2, col=1)
    notes = "<br>".join(f"{k}: {DESCRIPTIONS[k]}" for k in kinds)
    fig.add_annotation(text=notes, xref="paper", yref="paper", x=0, y=-0.16, showarrow=False,
                       align="left", xanchor="left", font_size=11)
    return finish(fig, title or f"Neurons removed per layer ({total})", barmode="group",
                  height=620, margin=dict(b=110))


def _positive_floor(values: Tensor) -> Tensor:
    """Zeros lifted to the smallest positive value, so they stay visible on a log scale."""
    positive = values[values > 0]
    return values.clamp_min(positive.min().item() if positive.numel() else 1e-12)


Shown = Literal["score", "forget", "retain"]


def importance_heatmap(
    forget: Float[Tensor, "layer neuron"],
    retain: Float[Tensor, "layer neuron"],
    *,
    show: Shown = "score",
    eps: float = 1e-3,
    sort: bool = False,
    kind: SiteKind = "mlp",
    title: str | None = None,
) -> go.Figure:
    """Layer x neuron heatmap of the selective-pruning score ``forget / (retain + eps)`` or an importance.

    Colour is log10 (importances span orders of magnitude). With ``sort`` each layer's neurons are
    ordered by decreasing value, which shows how concentrated each layer is; the hover always names
    the neuron's own index and both importances.
    """
    score = forget / (retain + eps)
    values = {"score": score, "forget": forget, "retain": retain}[show]
    index = torch.arange(values.shape[1]).expand_as(values)
    if sort:
        order = values.argsort(dim=1, descending=True)
        values, score, forget, retain, index = (t.gather(1, order) for t in (values, score, forget, retain, index))
    custom = compact(torch.stack([index.float(), forget, retain, score], dim=-1))
    label = {"score": f"score forget/(retain+{eps:g})", "forget": "forget importance", "retain": "retain importance"}[show]
    fig = go.Figure(go.Heatmap(
        z=compact(_positive_floor(values).log10()), customdata=custom, colorscale="Viridis",
        colorbar=dict(title=f"log10 {show}"),
        hovertemplate="layer %{y}<br>neuron %{customdata[0]}<br>forget importance %{customdata[1]:.3g}"
                      "<br>retain importance %{customdata[2]:.3g}<br>score %{customdata[3]:.3g}<extra></extra>",
    ))
    fig.update_yaxes(**layer_axis(values.shape[0]))
    x = "neuron rank within its layer (sorted by decreasing value)" if sort else "neuron index"
    return finish(fig, title or f"{label} of every {kind} neuron (log10 colour)", x=x, y="layer", height=560)


def importance_scatter(
    forget: Float[Tensor, "layer neuron"],
    retain: Float[Tensor, "layer neuron"],
    pruned: Bool[Tensor, "layer neuron"] | None = None,
    *,
    kind: SiteKind = "mlp",
    title: str | None = None,
) -> go.Figure:
    """Forget vs retain importance, one point per neuron, log axes: kept neurons coloured by layer, ``pruned`` red.

    Neurons above the diagonal matter more for the forget data; selective pruning removes those
    furthest above it (zeros are lifted to the smallest positive value to stay on the log axes).
    Each neuron is drawn once, the pruned ones as points of the same size as the rest: rings around
    4,610 of them covered the cloud they sit in.
    """
    n_layers, n_neurons = forget.shape
    layer = torch.arange(n_layers)[:, None].expand(n_layers, n_neurons).flatten()
    neuron = torch.arange(n_neurons).expand(n_layers, n_neurons).flatten()
    x, y = _positive_floor(retain.flatten()), _positive_floor(forget.flatten())
    custom = compact(torch.stack([layer.float(), neuron.float()], dim=-1))
    hover = "layer %{customdata[0]}, neuron %{customdata[1]}<br>forget %{y:.3g}<br>retain %{x:.3g}<extra></extra>"
    removed = pruned.flatten() if pruned is not None else torch.zeros_like(x, dtype=torch.bool)
    kept = ~removed
    fig = go.Figure(go.Scattergl(
        x=compact(x[kept]), y=compact(y[kept]), mode="markers", name="neuron" if pruned is None else "kept",
        customdata=custom[kept.numpy()], hovertemplate=hover,
        marker=dict(size=3, opacity=0.5, color=compact(layer[kept].float()), colorscale="Viridis",
                    cmin=0, cmax=n_layers - 1, colorbar=dict(title="layer")),
    ))
    if pruned is not None:
        # Red is not in Viridis, and drawn over the cloud, so the pruned corner of the cloud stands out.
        fig.add_trace(go.Scattergl(
            x=compact(x[removed]), y=compact(y[removed]), mode="markers", customdata=custom[removed.numpy()],
            name=f"pruned ({int(removed.sum())})", hovertemplate=hover,
            marker=dict(size=3, opacity=0.6, color="#d62728"),
        ))
    bounds = [min(x.min(), y.min()).item(), max(x.max(), y.max()).item()]
    fig.add_trace(go.Scatter(x=bounds, y=bounds, mode="lines", name="forget = retain",
                             line=dict(color="grey", dash="dot"), hoverinfo="skip"))
    # One range for both axes, so the diagonal runs corner to corner.
    fig.update_xaxes(**log_axis(*bounds))
    fig.update_yaxes(**log_axis(*bounds))
    return finish(fig, title or f"Forget vs retain importance of {n_layers * n_neurons} {kind} neurons",
                  x="retain importance (log)", y="forget importance (log)", height=680, width=760,
                  legend=dict(orientation="h", x=0, y=1.02, yanchor="bottom", itemsizing="constant"))


_RANK_TITLES = {"max": "top-activating contexts", "min": "most negative contexts",
                "abs": "contexts of largest |activation|"}


def neuron_contexts(contexts: NeuronContexts, title: str | None = None) -> go.Figure:
    """Top-activating contexts as a grid of tokens, each cell coloured by the neuron's activation."""
    labels = [f"#{i + 1} window {w} pos {p} ({a:.2f})" for i, (w, p, a) in enumerate(contexts.peaks)]
    # Scaled to the strongest peak: larger values of the other sign elsewhere would wash the peaks out.
    limit = max([abs(a) for _, _, a in contexts.peaks], default=0.0) or 1.0
    fig = go.Figure(go.Heatmap(
        z=contexts.activations.numpy(), x=contexts.offsets, y=labels, text=contexts.tokens,
        texttemplate="%{text}", textfont_size=11, colorscale="RdBu", reversescale=True, zmid=0,
        zmin=-limit, zmax=limit, colorbar=dict(title="activation"),
        hovertemplate="%{y}<br>offset %{x}: '%{text}'<br>activation %{z:.3f}<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(dtick=1)
    fig.add_vrect(x0=-0.5, x1=0.5, line=dict(color="black", width=2))  # the peak column
    note = f" — {DESCRIPTIONS[contexts.kind]}" if contexts.kind != "mlp" else ""
    return finish(
        fig, title or f"What {contexts.kind} neuron {contexts.layer}.{contexts.neuron} does: "
                      f"its {_RANK_TITLES[contexts.rank_by]}{note}",
        x="position relative to the peak token (tokens; · is a space, ↵ a newline)", y="context",
        height=max(340, 180 + 36 * len(labels)), width=1300, margin=dict(t=90),
    )

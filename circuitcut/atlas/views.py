"""Plotly views of an atlas; each returns a ``go.Figure`` (``circuitcut.plots.save_figure`` writes it).

=========================  ===============================================================
view                       shows
=========================  ===============================================================
``pairwise_heatmap``       any target x target matrix (Jaccard, cross-criticality), in hierarchy order
``atlas_tree``             the WordNet tree of the atlas's targets, each node with its run's numbers
``anatomy_side_by_side``   units in the subnetwork per layer and matrix, one panel per target
``neuron_map``             neuron masks: every target's neurons by layer, hover with their top contexts
``atlas_figures``          the shipped figures: cross-criticality heatmap and tree
=========================  ===============================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from circuitcut.atlas.compare import targets_of
from circuitcut.atlas.hierarchy import hierarchy_order, parents
from circuitcut.plots._common import finish, part_label
from circuitcut.sites import parse_site

if TYPE_CHECKING:
    from circuitcut.atlas.atlas import Atlas
    from circuitcut.atlas.findings import Comparisons


def _label(target: str, parent: dict[str, str | None]) -> str:
    """``food.n.01``, indented one dot per ancestor among the targets, so the axis shows the tree."""
    depth, node = 0, parent[target]
    while node is not None:
        depth, node = depth + 1, parent[node]
    return "· " * depth + target.removeprefix("isa:")


def pairwise_heatmap(matrix: pd.DataFrame, title: str, value: str = "value", fmt: str = ".2f",
                     off_diagonal_scale: bool = False) -> go.Figure:
    """A square matrix over targets (rows: the first of the pair, e.g. the mask removed; columns: the second, e.g.
    the facts scored) ordered by the hierarchy (:func:`~circuitcut.atlas.hierarchy.hierarchy_order`), so each
    family is a block on the diagonal; cells are annotated with their value.

    ``off_diagonal_scale``: the colours span the off-diagonal values only (the diagonal saturates), for a matrix
    whose diagonal is orders of magnitude larger (a run's effect on its own facts)."""
    order = hierarchy_order(list(matrix.index))
    parent = parents(order)
    values = matrix.loc[order, order].to_numpy(dtype=float)
    labels = [_label(t, parent) for t in order]
    off = values[~np.eye(len(order), dtype=bool)]
    span = dict(zmin=min(0.0, float(off.min())), zmax=max(float(off.max()), 1.0)) if off_diagonal_scale and len(off) else {}
    fig = go.Figure(go.Heatmap(
        z=values, x=labels, y=labels, colorscale="Blues", colorbar=dict(title=value), **span,
        text=[[format(v, fmt) for v in row] for row in values], texttemplate="%{text}", textfont_size=9,
        hovertemplate=f"%{{y}} / %{{x}}: %{{z:{fmt}}}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    side = max(420, 34 * len(order) + 200)
    return finish(fig, title, height=side, width=side + 120)


def atlas_tree(atlas: Atlas, granularity: str = "weight", seed: int = 0) -> go.Figure:
    """The atlas's targets as their WordNet tree (a child inside its nearest parent among them), each node with
    its run's units in the subnetwork, TargetKG dPPL, top-10 after removal and whether it keeps every bound;
    coloured by bounds kept."""
    frame = atlas.to_frame()
    frame = frame[(frame.granularity == granularity) & (frame.seed == seed)].set_index("target")
    names = targets_of(atlas, None, granularity, seed)
    parent = parents(names)
    text = [f"{row.units:,} units<br>TargetKG dPPL {row.dppl_target:+,.0f}%<br>top-10 {row.top10_target:.0f}%<br>"
            + ("bounds met" if row.bounds_met else f"missed: {row.goals_missed}") for row in
            (frame.loc[t] for t in names)]
    fig = go.Figure(go.Treemap(
        ids=names, labels=[t.removeprefix("isa:") for t in names], parents=[parent[t] or "" for t in names],
        text=text, textinfo="label+text", marker=dict(colors=["#2ca02c" if frame.loc[t].bounds_met else "#d62728"
                                                             for t in names]),
        hovertemplate="%{label}<br>%{text}<extra></extra>"))
    return finish(fig, f"The atlas's families in WordNet ({granularity} masks, seed {seed}; green: every bound kept)",
                  height=600)


def anatomy_side_by_side(atlas: Atlas, targets: Sequence[str], granularity: str = "weight",
                         seed: int = 0) -> go.Figure:
    """Units in each target's subnetwork per layer and weight matrix (or neuron kind), one panel per target on
    one colour scale, layers shared."""
    masks = {atlas.target(t): atlas.mask(t, granularity, seed) for t in targets}
    sites = [parse_site(s) for s in next(iter(masks.values())).removed]
    layers = sorted({layer for layer, _ in sites})
    parts = list(dict.fromkeys(part for _, part in sites))
    counts = {}
    for target, mask in masks.items():
        grid = np.zeros((len(layers), len(parts)), dtype=np.int64)
        for site, m in mask.removed.items():
            layer, part = parse_site(site)
            grid[layers.index(layer), parts.index(part)] = int(m.sum())
        counts[target] = grid
    top = max(1, max(int(g.max()) for g in counts.values()))
    fig = make_subplots(rows=1, cols=len(masks), shared_yaxes=True, horizontal_spacing=0.02,
                        subplot_titles=[f"{t.removeprefix('isa:')} ({g.sum():,})" for t, g in counts.items()])
    for col, (target, grid) in enumerate(counts.items(), start=1):
        fig.add_trace(go.Heatmap(
            z=grid, x=[part_label(p) for p in parts], y=layers, zmin=0, zmax=top, colorscale="Magma",
            reversescale=True, showscale=col == 1, colorbar=dict(title="units"), name=target,
            hovertemplate=f"{target} layer %{{y}} %{{x}}: %{{z}} units<extra></extra>"), row=1, col=col)
    fig.update_yaxes(title_text="layer", dtick=1 if len(layers) <= 16 else 2, row=1, col=1)
    return finish(fig, f"Where each family's subnetwork sits ({granularity} masks, seed {seed})",
                  height=max(420, 24 * len(layers) + 160), width=max(600, 260 * len(masks)))


def neuron_map(atlas: Atlas, comparisons: Comparisons, targets: Sequence[str] | None = None) -> go.Figure:
    """Neuron masks: each target's neurons as points (neuron index across, layer up; a target's points
    nudged within the layer's row, so shared neurons show side by side); the hover names the neuron, the
    other targets whose masks hold it, and its top contexts on prose (:attr:`Comparisons.contexts`)."""
    from circuitcut.sites import neuron_site

    seed = comparisons.seed
    names = [atlas.target(t) for t in targets] if targets is not None else list(comparisons.jaccard.index)
    held: dict[str, list[str]] = {}
    masks = {t: atlas.mask(t, "neuron", seed) for t in names}
    for target, mask in masks.items():
        for site, removed in mask.removed.items():
            for n in removed.flatten().nonzero().flatten().tolist():
                held.setdefault(f"{site}:{n}", []).append(target)
    fig = go.Figure()
    for i, (target, mask) in enumerate(masks.items()):
        x, y, text = [], [], []
        for site, removed in mask.removed.items():
            layer, kind = neuron_site(site)
            for n in removed.flatten().nonzero().flatten().tolist():
                key = f"{site}:{n}"
                others = [o.removeprefix("isa:") for o in held[key] if o != target]
                contexts = "<br>".join(c.replace("<", "&lt;") for c in comparisons.contexts.get(key, []))
                x.append(n)
                y.append(layer + (i - (len(masks) - 1) / 2) * 0.6 / max(len(masks), 1))
                text.append(f"{target.removeprefix('isa:')}: layer {layer} {kind} neuron {n}<br>"
                            f"also in: {', '.join(others) or 'no other target'}<br>{contexts}")
        fig.add_trace(go.Scatter(x=x, y=y, mode="markers", name=target.removeprefix("isa:"), text=text,
                                 marker=dict(size=7, line=dict(width=0.5, color="white")),
                                 hovertemplate="%{text}<extra></extra>"))
    fig.update_xaxes(title_text="neuron")
    fig.update_yaxes(title_text="layer", dtick=1)
    return finish(fig, f"Every family's subnetwork neurons (neuron masks, seed {seed}); hover: top contexts on prose",
                  height=640)


def atlas_figures(atlas: Atlas, comparisons: Comparisons, found: dict) -> dict[str, tuple[go.Figure, str]]:
    """The figures ``circuitcut atlas compare`` writes, by file name, each with its caption (the numbers behind it,
    from ``found``: :func:`~circuitcut.atlas.findings.findings`): the cross-criticality excess heatmap and the
    WordNet tree of the compared masks, and for neuron masks the neuron map. Weight masks of seed 0 take the bare
    names (``atlas_tree``), others a suffix (``atlas_tree_neuron``, ``atlas_tree_weight_seed1``); the neuron map
    names its seed only."""
    g, seed = comparisons.granularity, comparisons.seed
    suffix = "" if (g, seed) == ("weight", 0) else f"_{g}" + (f"_seed{seed}" if seed else "")  # none overwrites another
    excess = comparisons.excess()
    diagonal = float(np.diag(excess.to_numpy(dtype=float)).mean())
    kinds = ", ".join(f"{kind} {v['mean']:+.1f}" for kind, v in found["excess_by_kind"].items())
    rho = found["excess_vs_distance"]
    frame = atlas.to_frame()
    frame = frame[(frame.granularity == g) & (frame.seed == seed)]
    figures = {
        f"atlas_cross_criticality{suffix}": (pairwise_heatmap(
            excess, f"Cross-criticality excess, pp ({g} masks)", "excess pp",
            ".0f", off_diagonal_scale=True),
            f"{len(excess)} families, {g} masks: each cell is the TargetKG dPPL of the column's facts without the "
            f"row's subnetwork, less that without a random mask of its size per site (pp; colours span the "
            f"off-diagonal cells). Removing a family's own subnetwork raises its TargetKG dPPL "
            f"{diagonal:+.0f} pp above random masks on average; another family's, by pair kind (mean pp): {kinds}. "
            f"Spearman rho of the excess with WordNet distance {rho['rho']:+.2f} (95 % interval over targets "
            f"{rho['low']:+.2f} to {rho['high']:+.2f})."),
        f"atlas_tree{suffix}": (atlas_tree(atlas, g, seed),
                       f"The atlas's {len(frame)} families ({g} masks, seed {seed}) in their WordNet tree; "
                       f"{int(frame.bounds_met.sum())} keep every bound (green)."),
    }
    if g == "neuron":
        figures[f"atlas_neuron_map{f'_seed{seed}' if seed else ''}"] = (neuron_map(atlas, comparisons), (
            f"The neurons of {len(excess)} families' neuron masks (seed {seed}) by layer; {len(comparisons.contexts)} "
            "distinct neurons, each hover with its three strongest contexts on prose."))
    return figures

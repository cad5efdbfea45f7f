"""Views of unit sets (learned subnetworks, pruned neurons): where they sit, and how much two agree.

Every view takes :class:`~circuitcut.masks.Mask` objects, whichever method made them: a selective-pruning
neuron set and a learned neuron mask compare directly, as long as they name the same sites.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from circuitcut.evaluate import sparsity_text
from circuitcut.masks import Mask
from circuitcut.overlap import chance_jaccard, jaccard, overlap_by_layer
from circuitcut.plots._common import PALETTE, finish, log_axis, part_label
from circuitcut.sites import parse_site


def subnetwork_anatomy(mask: Mask, title: str | None = None) -> go.Figure:
    """Percent of each layer's units in the set, per weight matrix (q k v o gate in out) or neuron kind.

    Left: a layer x matrix heatmap of percent in the subnetwork; right: the subnetwork's units per
    layer, all matrices together.
    """
    counts: dict[tuple[int, str], tuple[int, int]] = {}
    for name, m in mask.removed.items():
        counts[parse_site(name)] = (int(m.sum()), m.numel())
    layers = sorted({layer for layer, _ in counts})
    parts = list(dict.fromkeys(part for _, part in sorted(counts, key=lambda lp: lp[0])))
    percent = np.full((len(layers), len(parts)), np.nan)
    inside = np.zeros((len(layers), len(parts)), dtype=np.int64)
    for (layer, part), (n, total) in counts.items():
        r, c = layers.index(layer), parts.index(part)
        percent[r, c], inside[r, c] = 100 * n / total, n
    # Percentages of a weight mask round to 0.0 everywhere: label its cells with unit counts instead.
    counted = np.nanmax(percent, initial=0) < 0.1
    cell_text = inside if counted else np.round(percent, 1)
    total_in, total = sum(n for n, _ in counts.values()), sum(t for _, t in counts.values())
    heat_title = "colour: % in the subnetwork; cells: units" if counted else "% of the matrix's units in the subnetwork"
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, column_widths=[0.65, 0.35], horizontal_spacing=0.03,
                        subplot_titles=(heat_title, "units in the subnetwork"))
    fig.add_trace(go.Heatmap(
        z=percent, x=[part_label(p) for p in parts], y=layers, customdata=inside, colorscale="Magma",
        reversescale=True, zmin=0, colorbar=dict(title="% in", x=1.02), text=cell_text, texttemplate="%{text}",
        textfont_size=9, hovertemplate="layer %{y} %{x}: %{z:.2g}% (%{customdata} units)<extra></extra>",
    ), row=1, col=1)
    fig.add_bar(x=inside.sum(axis=1), y=layers, orientation="h", marker_color=PALETTE[0], showlegend=False,
                hovertemplate="layer %{y}: %{x} units<extra></extra>", row=1, col=2)
    fig.update_yaxes(title_text="layer", dtick=1 if len(layers) <= 16 else 2, row=1, col=1)
    fig.update_xaxes(title_text="weight matrix / neuron kind", row=1, col=1)
    fig.update_xaxes(title_text="units (weights or neurons)", row=1, col=2)
    return finish(fig, title or f"Where the subnetwork sits: {total_in:,} of {total:,} units "
                                f"(sparsity {sparsity_text(100 - 100 * total_in / max(total, 1))}%)",
                  height=max(420, 24 * len(layers) + 160))


def overlap_summary(a: Mask, b: Mask) -> dict:
    """Over the sites both cover: units only in a, in both, only in b, the Jaccard and its random-set level."""
    per_layer = overlap_by_layer(a.removed, b.removed)
    only_a, both, only_b, n = (sum(c[i] for c in per_layer.values()) for i in range(4))
    return {"only_a": only_a, "both": both, "only_b": only_b, "units": n, "jaccard": jaccard(only_a, both, only_b),
            "chance": chance_jaccard(only_a + both, only_b + both, n)}


def jaccard_matrix(sets: Mapping[str, Mask], title: str | None = None) -> go.Figure:
    """Pairwise Jaccard overlap |A & B| / |A | B| of several sets (targets, seeds, methods), annotated."""
    labels = list(sets)
    values = np.eye(len(labels))
    chance = np.eye(len(labels))
    for i, j in combinations(range(len(labels)), 2):
        pair = overlap_summary(sets[labels[i]], sets[labels[j]])
        values[i, j] = values[j, i] = pair["jaccard"]
        chance[i, j] = chance[j, i] = pair["chance"]
    fig = go.Figure(go.Heatmap(
        z=values, x=labels, y=labels, customdata=chance, zmin=0, zmax=1, colorscale="Blues",
        text=[[f"{v:.3f}" if i == j else f"{v:.3f}<br>random {c:.3f}" for j, (v, c) in enumerate(zip(vr, cr))]
              for i, (vr, cr) in enumerate(zip(values, chance))],
        texttemplate="%{text}", colorbar=dict(title="Jaccard"),
        hovertemplate="%{y} vs %{x}<br>Jaccard %{z:.3f}<br>two random sets of these sizes: %{customdata:.3f}"
                      "<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed")
    return finish(fig, title or "Overlap of subnetworks (Jaccard)<br><sup>random: two random sets of the same sizes"
                                "</sup>",
                  x="subnetwork", y="subnetwork", height=max(420, 60 * len(labels) + 200),
                  width=max(520, 60 * len(labels) + 320))


def overlap_per_layer(
    sets: Mapping[str, Mask], pairs: Sequence[tuple[str, str]] | None = None, title: str | None = None
) -> go.Figure:
    """Jaccard overlap per layer for pairs of sets (all pairs by default), with the random-set level dotted."""
    pairs = list(pairs) if pairs is not None else list(combinations(sets, 2))
    fig = go.Figure()
    layers: list[int] = []
    for i, (a, b) in enumerate(pairs):
        per_layer = overlap_by_layer(sets[a].removed, sets[b].removed)
        layers = list(per_layer)
        color = PALETTE[i % len(PALETTE)]
        fig.add_scatter(x=layers, y=[jaccard(*c[:3]) for c in per_layer.values()], mode="lines+markers",
                        name=f"{a} vs {b}", legendgroup=f"{a}{b}", line_color=color,
                        hovertemplate="layer %{x}: Jaccard %{y:.3f}<extra></extra>")
        fig.add_scatter(x=layers, y=[chance_jaccard(oa + both, ob + both, n) for oa, both, ob, n in per_layer.values()],
                        mode="lines", name=f"{a} vs {b}: random level", legendgroup=f"{a}{b}",
                        line=dict(color=color, dash="dot"), hovertemplate="layer %{x}: random %{y:.3f}<extra></extra>")
    fig.update_xaxes(dtick=1 if len(layers) <= 16 else 2)
    return finish(fig, title or "Overlap per layer (Jaccard; dotted: two random sets of the same sizes)",
                  x="layer", y="Jaccard overlap", height=520, legend=dict(orientation="h", y=-0.2, x=0))


def overlap_counts(
    a: Mask, b: Mask, names: tuple[str, str] = ("selective pruning", "learned mask"),
    title: str | None = None,
) -> go.Figure:
    """Per layer, units only in ``a``, in both, only in ``b`` (stacked), over the sites both cover.

    Made for a selective-pruning neuron set against a learned neuron mask, but any two sets do.
    """
    per_layer = overlap_by_layer(a.removed, b.removed)
    layers = list(per_layer)
    fig = go.Figure()
    for k, (label, color) in enumerate(((f"only {names[0]}", PALETTE[0]), ("both", PALETTE[3]),
                                        (f"only {names[1]}", PALETTE[1]))):
        fig.add_bar(x=layers, y=[c[k] for c in per_layer.values()], name=label, marker_color=color,
                    hovertemplate="layer %{x}: %{y} units<extra>" + label + "</extra>")
    o = overlap_summary(a, b)
    fig.update_xaxes(dtick=1 if len(layers) <= 16 else 2)
    return finish(fig, title or f"{names[0]} vs {names[1]}, per layer<br><sup>{o['both']} shared, {o['only_a']} only "
                                f"{names[0]}, {o['only_b']} only {names[1]}</sup><br><sup>Jaccard {o['jaccard']:.3f} "
                                f"(random sets of the same sizes: {o['chance']:.3f})</sup>",
                  x="layer", y="units", barmode="stack", height=480, margin=dict(t=110))


DATASET_LABELS = {
    "target": "TargetKG", "target_paraphrase": "TargetKG<br>paraphrased", "control": "ControlKG<br>(trained)",
    "control_paraphrase": "ControlKG trained,<br>paraphrased", "control_new": "ControlKG<br>(never seen)",
    "control_new_paraphrase": "ControlKG never seen,<br>paraphrased", "lm": "ControlLM<br>(text)",
}


def subnetwork_effect(metrics: dict, title: str | None = None) -> go.Figure:
    """The remaining model against the original and against random masks of the same size, per dataset.

    Left: perplexity of the remaining model divided by the original's (log axis; 1 = unchanged, so
    ``dPPL = (ratio - 1) * 100``; KG perplexity over the whole tail), learned subnetwork removed vs
    random masks removed (mean, bars from the lowest to the highest seed). Right: top-10 accuracy
    (a fact counts as suppressed when its tail leaves the top 10). ``metrics`` is a subnetwork
    result's ``metrics`` (``original``, ``remaining``, ``random.per_seed``).

    Bars run horizontally, one row per dataset named once on the shared axis: seven two-line names
    side by side under 500-pixel panels ran into each other.
    """
    original, remaining = metrics["original"], metrics["remaining"]
    seeds = metrics.get("random", {}).get("per_seed", [])
    names = [n for n in DATASET_LABELS if n in original] + [n for n in original if n not in DATASET_LABELS]
    labels = [DATASET_LABELS.get(n, n) for n in names]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=("perplexity, remaining / original (log)", "top-10 accuracy (%)"))
    ratio = [remaining[n]["ppl"] / original[n]["ppl"] for n in names]
    extremes = [min(*ratio, 1.0), max(ratio)]
    hover = "%{y}: ×%{x:.3g} (dPPL %{customdata:+.1f}%)"
    fig.add_bar(y=labels, x=ratio, orientation="h", name="subnetwork removed", marker_color=PALETTE[1], row=1, col=1,
                legendgroup="s", customdata=[100 * (r - 1) for r in ratio], hovertemplate=hover)
    if seeds:
        rand = np.array([[s[n]["ppl"] / original[n]["ppl"] for n in names] for s in seeds])
        mean = rand.mean(axis=0)
        extremes = [min(extremes[0], rand.min()), max(extremes[1], rand.max())]
        spread = dict(type="data", symmetric=False, array=rand.max(0) - mean, arrayminus=mean - rand.min(0))
        fig.add_bar(y=labels, x=mean, orientation="h", name=f"random masks, same size ({len(seeds)} seeds)",
                    marker_color=PALETTE[0], error_x=spread, customdata=100 * (mean - 1), hovertemplate=hover,
                    row=1, col=1, legendgroup="r")
    fig.add_vline(x=1, line=dict(color="grey", dash="dot"), row=1, col=1)
    top10 = {"original": [original[n]["top10"] for n in names], "subnetwork removed": [remaining[n]["top10"] for n in names]}
    if seeds:
        top10["random masks (mean)"] = list(np.mean([[s[n]["top10"] for n in names] for s in seeds], axis=0))
    for (label, values), color in zip(top10.items(), ("#7f7f7f", PALETTE[1], PALETTE[0])):
        fig.add_bar(y=labels, x=values, orientation="h", name=label, marker_color=color, row=1, col=2,
                    legendgroup=label[0], showlegend=label == "original",
                    hovertemplate="%{y}: %{x:.1f}%<extra>" + label + "</extra>")
    # Plotly's log autorange leaves no room beyond the longest bar, which then looks clipped.
    fig.update_xaxes(title_text="PPL ratio (remaining / original)", row=1, col=1,
                     **log_axis(*extremes, pad=(0.05, 0.15)))
    fig.update_xaxes(title_text="top-10 accuracy (%)", range=[0, 100], row=1, col=2)
    # The first dataset (the target) on top, read like a table.
    fig.update_yaxes(autorange="reversed")
    target = metrics.get("target", "")
    sparsity = metrics.get("sparsity")
    size = f", sparsity {sparsity_text(sparsity)}%" if sparsity is not None else ""
    return finish(fig, title or f"Removing the subnetwork for {target}{size}: learned vs random", barmode="group",
                  height=max(420, 190 + 64 * len(names)), width=1150, legend=dict(orientation="h", y=-0.12, x=0),
                  margin=dict(b=110))


def training_curves(history: Sequence[dict], title: str | None = None) -> go.Figure:
    """Loss terms (log axis) and the share of units outside the subnetwork against training step."""
    steps = [h["step"] for h in history]
    terms = [k for k in ("suppression", "control_kg", "control_lm", "sparsity_loss", "loss") if any(k in h for h in history)]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("loss terms (log)", "units outside the subnetwork (%)"))
    for i, term in enumerate(terms):
        fig.add_scatter(x=steps, y=[h.get(term) for h in history], mode="lines", name=term,
                        line=dict(color=PALETTE[i % len(PALETTE)], dash="dot" if term == "loss" else "solid"),
                        row=1, col=1)
    fig.add_scatter(x=steps, y=[h["sparsity"] for h in history], mode="lines+markers", name="sparsity",
                    line_color="black", row=1, col=2)
    fig.update_yaxes(type="log", title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="% of maskable units not in the subnetwork", row=1, col=2)
    fig.update_xaxes(title_text="training step")
    return finish(fig, title or "Learning the subnetwork mask", height=440, width=1100)


def selection_curves(metrics: dict, title: str | None = None) -> go.Figure:
    """What the selection rule saw: on validation data, against training step, the sparsity of the
    evaluation mask (left) and the target facts still in the top 10 and the control damage (right),
    with the rule's bounds dotted and the chosen step marked."""
    sel = metrics["selection"]
    vals, rule = sel["validations"], sel["rule"]
    steps = [v["step"] for v in vals]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("sparsity of the evaluation mask (%)", "validation figures (%)"))
    fig.add_scatter(x=steps, y=[v["sparsity"] for v in vals], mode="lines+markers", name="sparsity",
                    line_color="black", row=1, col=1)
    series = (("target_top10", "target rows in the top 10", "max_target_top10"),
              ("control_dppl", "ControlKG dPPL", "max_control_dppl"), ("lm_dppl", "ControlLM dPPL", "max_lm_dppl"))
    for i, (key, label, bound) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        fig.add_scatter(x=steps, y=[v[key] for v in vals], mode="lines+markers", name=label, line_color=color, row=1, col=2)
        fig.add_hline(y=rule[bound], line=dict(color=color, dash="dot"), row=1, col=2)
    if sel["chosen_step"] is not None:
        for col in (1, 2):
            fig.add_vline(x=sel["chosen_step"], line=dict(color="grey", dash="dash"), row=1, col=col)
    fig.update_xaxes(title_text="training step")
    met = "rule met" if sel["rule_met"] else "rule not met: least violation"
    return finish(fig, title or f"Choosing the mask on validation data: step {sel['chosen_step']} ({met})",
                  height=440, width=1100)


def chosen_point(metrics: dict) -> tuple[float, float]:
    """Where a run's chosen mask lands on the reported data: target rows left in the top 10 (the worse of
    the training and paraphrased templates) and never-seen ControlKG dPPL, both in percent."""
    left = max(metrics["remaining"][name]["top10"] for name in ("target", "target_paraphrase"))
    return left, metrics["change"]["control_new"]["dppl"]


def tradeoff(runs: Mapping[str, dict], title: str | None = None) -> go.Figure:
    """Target suppression against control damage, one trace per run (``label -> metrics.json``): left, every
    validation of the run's mask during training (what the selection rule saw, steps joined in order);
    right, the chosen mask on the reported data (target rows left in the top 10, the worse of the training
    and paraphrased templates, against never-seen ControlKG dPPL). The shaded corner keeps both bounds."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=(
        "validation, every checkpoint", "evaluation, chosen mask"))
    for i, (label, metrics) in enumerate(runs.items()):
        # past the palette's length, runs differ by marker and dash as well as by colour
        color, cycle = PALETTE[i % len(PALETTE)], i // len(PALETTE) % 3
        symbol, dash = ("circle", "diamond", "square")[cycle], ("solid", "dash", "dot")[cycle]
        vals = metrics["selection"]["validations"]
        fig.add_scatter(x=[v["target_top10"] for v in vals], y=[v["control_dppl"] for v in vals], mode="lines+markers",
                        text=[f"step {v['step']}" for v in vals], name=label, legendgroup=label,
                        line=dict(color=color, dash=dash), marker_symbol=symbol, row=1, col=1)
        left, damage = chosen_point(metrics)
        fig.add_scatter(x=[left], y=[damage], mode="markers", name=label,
                        legendgroup=label, showlegend=False, marker=dict(color=color, size=11, symbol=symbol),
                        row=1, col=2)
    rule = next(iter(runs.values()))["selection"]["rule"]
    for col in (1, 2):
        fig.add_shape(type="rect", x0=0, x1=rule["max_target_top10"], y0=-5, y1=rule["max_control_dppl"],
                      fillcolor="rgba(0,160,0,0.12)", line_width=0, row=1, col=col)
    fig.update_xaxes(title_text="target rows in the top 10 (%)")
    fig.update_yaxes(title_text="ControlKG dPPL (%)", row=1, col=1)
    fig.update_yaxes(title_text="never-seen ControlKG dPPL (%)", row=1, col=2)
    return finish(fig, title or "Suppressing the target against damaging the controls", height=480, width=1100)

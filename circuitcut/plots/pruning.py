"""Views of a selective-pruning run: metrics against the fraction pruned, and forget drop vs retain drop."""

from __future__ import annotations

from collections.abc import Mapping

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from circuitcut.plots._common import FORGET, PALETTE, RETAIN, finish, log_axis
from circuitcut.pruning import PruningResult
from circuitcut.pruning.report import drop

METRIC_LABELS = {
    "top1": "top-1 accuracy (%)", "top10": "top-10 accuracy (%)",
    "top1_skip": "top-1 accuracy, common tokens skipped (%)", "top10_skip": "top-10 accuracy, common tokens skipped (%)",
}
DASH = {"selective": "solid", "random": "dash"}


def percent_pruned(step: dict) -> float:
    """Percent of neurons removed at a history step (the mean over site kinds, which prune alike)."""
    fractions = step["fraction"].values()
    return 100 * sum(fractions) / max(len(fractions), 1)


def _methods(result: PruningResult) -> list[str]:
    return [m for m in ("selective", "random") if any(h["method"] == m for h in result.history)]


def pruning_curves(result: PruningResult, metric: str = "top1", title: str | None = None) -> go.Figure:
    """Forget and retain accuracy (left) and perplexity (right) against percent pruned.

    Selective pruning solid, random pruning dashed; stars mark the step of maximal
    ``forget drop - retain drop`` (the run's selectivity, docs/metrics.md).
    """
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=(METRIC_LABELS.get(metric, metric), "perplexity (log scale)"))
    perplexities = [h[data]["perplexity"] for h in result.history for data in ("forget", "retain")]
    for method in _methods(result):
        steps = result.steps(method)
        x = [percent_pruned(h) for h in steps]
        for data, color in (("forget", FORGET), ("retain", RETAIN)):
            name = f"{data} ({getattr(result.config, data)}) · {method}"
            style = dict(mode="lines+markers", name=name, legendgroup=name, line=dict(color=color, dash=DASH[method]))
            fig.add_scatter(x=x, y=[h[data][metric] for h in steps], row=1, col=1,
                            hovertemplate="%{x:.1f}% pruned: %{y:.1f}%", **style)
            fig.add_scatter(x=x, y=[h[data]["perplexity"] for h in steps], row=1, col=2, showlegend=False,
                            hovertemplate="%{x:.1f}% pruned: perplexity %{y:.2f}", **style)
    if "selective" in _methods(result):
        best = result.selectivity("selective", metric)
        h = result.steps("selective")[best["step"]]
        x = percent_pruned(h)
        fig.add_scatter(x=[x, x], y=[h["forget"][metric], h["retain"][metric]], mode="markers", row=1, col=1,
                        name=f"max forget−retain drop: {best['selectivity']:.1f}", hoverinfo="skip",
                        marker=dict(symbol="star", size=14, color="black"))
        fig.add_vline(x=x, line=dict(color="grey", dash="dot"), row=1, col=1)
    fig.update_yaxes(title_text=METRIC_LABELS.get(metric, metric), row=1, col=1)
    fig.update_yaxes(title_text="perplexity", row=1, col=2, **log_axis(min(perplexities), max(perplexities)))
    fig.update_xaxes(title_text="neurons pruned (% of each site kind)")
    sites = "+".join(result.config.sites)
    return finish(fig, title or f"Selective vs random pruning of {sites} neurons "
                                f"({result.config.importance} importance)", height=560, width=1100,
                  legend=dict(orientation="h", y=-0.22, x=0), margin=dict(b=150))


def drop_curves(
    results: PruningResult | Mapping[str, PruningResult], metric: str = "top1", title: str | None = None
) -> go.Figure:
    """Forget drop against retain drop, relative percent (the papers' Figure 1 style), one line per run and method.

    Points above the diagonal removed more of the forget capability than of the retain one;
    each point is labelled by the percent pruned.
    """
    results = {"": results} if isinstance(results, PruningResult) else dict(results)
    fig = go.Figure()
    extent = [0.0, 1.0]
    for i, (label, result) in enumerate(results.items()):
        for method in _methods(result):
            base, *steps = result.steps(method)
            fd = [drop(base["forget"][metric], h["forget"][metric]) for h in steps]
            rd = [drop(base["retain"][metric], h["retain"][metric]) for h in steps]
            extent = [min(extent[0], *fd, *rd), max(extent[1], *fd, *rd)]
            fig.add_scatter(
                x=[0.0, *rd], y=[0.0, *fd], mode="lines+markers+text", name=f"{label} {method}".strip(),
                text=["", *(f"{percent_pruned(h):.0f}%" for h in steps)], textposition="top left",
                line=dict(color=PALETTE[i % len(PALETTE)], dash=DASH[method]),
                hovertemplate="retain drop %{x:.1f}%<br>forget drop %{y:.1f}%<br>%{text} pruned<extra></extra>",
            )
    fig.add_scatter(x=extent, y=extent, mode="lines", name="equal drops", line=dict(color="grey", dash="dot"),
                    hoverinfo="skip")
    what = METRIC_LABELS.get(metric, metric).replace(" (%)", "")
    return finish(fig, title or f"Forget drop vs retain drop in {what}",
                  x=f"retain drop in {what} (% of original)", y=f"forget drop in {what} (% of original)",
                  height=520, width=640)

"""The relearning view: forget and retain metrics against fine-tuning steps, per removal."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from circuitcut.plots._common import PALETTE, finish
from circuitcut.robustness.relearn import RelearnResult

COLORS = {"original": "black", "selective": PALETTE[1], "learned": PALETTE[3], "random": PALETTE[0]}
LABELS = {"top1": "top-1 accuracy (%)", "top10": "tail in top 10 (%)"}


def relearn_curves(result: RelearnResult, title: str | None = None) -> go.Figure:
    """Forget metric (left) and retain metric (right) against fine-tuning steps, one line per removal.

    The original model is the black reference; a dotted line per removal marks the level at which
    it has regained ``config.recover`` of what it lost, and a diamond the first step at or above it.
    """
    metric, label = result.metric, LABELS.get(result.metric, result.metric)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=(f"forget: {label}", f"retain: {label}"))
    recovery = result.recovery()
    for name, curve in result.curves.items():
        color = COLORS.get(name, PALETTE[4])
        steps, tokens = [p["step"] for p in curve], [p["tokens"] for p in curve]
        for col, data in ((1, "forget"), (2, "retain")):
            fig.add_scatter(x=steps, y=[p[data][metric] for p in curve], customdata=tokens, row=1, col=col,
                            mode="lines+markers", name=name, legendgroup=name, showlegend=col == 1,
                            line=dict(color=color, dash="dash" if name == "random" else "solid"),
                            hovertemplate=f"{name}, step %{{x}} (%{{customdata}} tokens): %{{y:.1f}}<extra></extra>")
        r = recovery.get(name)
        if r is not None and r["lost"] > 0:
            fig.add_hline(y=r["goal"], line=dict(color=color, dash="dot", width=1), row=1, col=1)
            if r["step"] is not None:
                y = next(p["forget"][metric] for p in curve if p["step"] == r["step"])
                fig.add_scatter(x=[r["step"]], y=[y], mode="markers", row=1, col=1, showlegend=False,
                                marker=dict(symbol="diamond", size=12, color=color), hoverinfo="skip")
    fig.update_xaxes(title_text="fine-tuning steps")
    fig.update_yaxes(title_text=label, row=1, col=1)
    run, config = result.run, result.config
    folder = Path(str(run.get("folder"))).name  # the run's name; its full path would not fit (nor travel)
    what = (f"step {run['step']} of {folder}" if run.get("kind") == "prune"
            else f"subnetwork {run.get('target')} ({folder})")
    return finish(fig, title or f"Relearning after removal: {what}; {config.batch_size} "
                  f"{'windows' if run.get('kind') == 'prune' else 'facts'} per step, lr {config.lr:g}, "
                  f"{config.recover:.0%} recovery dotted", legend=dict(orientation="h", y=-0.2))


def family_generalisation(reports: dict[str, dict], metric: str = "top10") -> go.Figure:
    """Per subnetwork (one panel each), the remaining model's ``metric`` on each fact set (training facts,
    other facts of the family, a sibling family) for the original model, the learned mask and random
    masks of the same size (mean, with the standard deviation over seeds as error bars).

    ``reports``: label -> :func:`~circuitcut.robustness.generalisation` report.
    """
    fig = make_subplots(rows=1, cols=len(reports), subplot_titles=list(reports), horizontal_spacing=0.08)
    for col, report in enumerate(reports.values(), start=1):
        names = list(report["original"])
        rand = [report["random"][n][metric] for n in names]
        bars = (("original", [report["original"][n][metric] for n in names], None),
                ("learned", [report["learned"][n][metric] for n in names], None),
                ("random", [r["mean"] for r in rand], [r["std"] for r in rand]))
        for name, values, errors in bars:
            fig.add_bar(x=names, y=values, name=name, legendgroup=name, showlegend=col == 1, row=1, col=col,
                        marker_color=COLORS[name], error_y=None if errors is None else dict(array=errors),
                        hovertemplate=f"{name}, %{{x}}: %{{y:.1f}}<extra></extra>")
    fig.update_yaxes(title_text=LABELS.get(metric, metric), row=1, col=1)
    return finish(fig, "Does the removal generalise to the rest of the family?", barmode="group",
                  legend=dict(orientation="h", y=-0.25))

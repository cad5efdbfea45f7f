"""The relearning view: forget and retain metrics against fine-tuning steps, per removal."""

from __future__ import annotations

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
    what = (f"step {run['step']} of {run['folder']}" if run.get("kind") == "prune"
            else f"subnetwork {run.get('target')} ({run.get('folder')})")
    return finish(fig, title or f"Relearning after removal: {what}; {config.batch_size} "
                  f"{'windows' if run.get('kind') == 'prune' else 'facts'} per step, lr {config.lr:g}, "
                  f"{config.recover:.0%} recovery dotted", legend=dict(orientation="h", y=-0.2))

"""The duel's view: damage to what is forgotten against damage to what is kept, per method and task."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from circuitcut.duel.report import point_rows
from circuitcut.duel.run import DuelResult
from circuitcut.plots._common import PALETTE, finish

AXES = {"knowledge": ("never-seen ControlKG dPPL (%)", "TargetKG dPPL (%)"),
        "corpus": ("retain top-1 drop (%)", "forget top-1 drop (%)")}
"""Each task's axes: what its ``control`` and ``target`` columns measure."""


def duel_scatter(result: DuelResult) -> go.Figure:
    """One panel per task: each method's points (sizes as markers, neuron counts on hover), and random masks of
    selective pruning's sizes; up and to the left is better."""
    rows = point_rows(result)
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig = make_subplots(rows=1, cols=max(len(tasks), 1), subplot_titles=[f"{t} task" for t in tasks])
    methods = list(dict.fromkeys([*(r["method"] for r in rows), "random"]))
    for col, task in enumerate(tasks, start=1):
        for i, method in enumerate(methods):
            points = [r for r in rows if r["task"] == task and r["method"] == (
                "selective" if method == "random" else method)]
            if not points:
                continue
            x, y = ("random_control", "random_target") if method == "random" else ("control", "target")
            fig.add_trace(go.Scatter(
                x=[p[x] for p in points], y=[p[y] for p in points], mode="lines+markers", name=method,
                legendgroup=method, showlegend=col == 1, marker=dict(color=PALETTE[i % len(PALETTE)], size=9),
                text=[f"{p['units']} {'weights' if p['granularity'] == 'weight' else 'neurons'}" for p in points],
                hovertemplate="%{text}<br>control %{x:.1f}<br>target %{y:.1f}<extra>" + method + "</extra>"),
                row=1, col=col)
        fig.update_xaxes(title_text=AXES[task][0], row=1, col=col)
        fig.update_yaxes(title_text=AXES[task][1], row=1, col=col)
    return finish(fig, "The duel: damage to the target against damage to what is kept")

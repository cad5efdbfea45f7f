"""The duel's view: damage to what is forgotten against damage to what is kept, per method and task."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from circuitcut.duel.report import point_rows
from circuitcut.duel.run import DuelResult
from circuitcut.plots._common import PALETTE, finish

AXES = {"knowledge": ("never-seen ControlKG PPL, remaining / original", "TargetKG PPL, remaining / original"),
        "corpus": ("retain top-1 drop (%)", "forget top-1 drop (%)")}
"""Each task's axes: what its ``control`` and ``target`` columns measure (knowledge: as perplexity ratios, 1 + dPPL /
100, on log axes, since one method's dPPL spans four orders of magnitude beyond another's)."""


def _axis_value(task: str, value: float) -> float:
    return 1 + value / 100 if task == "knowledge" else value


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
                x=[_axis_value(task, p[x]) for p in points], y=[_axis_value(task, p[y]) for p in points],
                customdata=[[p[x], p[y]] for p in points], mode="lines+markers", name=method,
                legendgroup=method, showlegend=col == 1, marker=dict(color=PALETTE[i % len(PALETTE)], size=9),
                text=[f"{p['units']} {'weights' if p['granularity'] == 'weight' else 'neurons'}" for p in points],
                hovertemplate="%{text}<br>control %{customdata[0]:.1f} %<br>target %{customdata[1]:.1f} %<extra>"
                              + method + "</extra>"),
                row=1, col=col)
        scale = "log" if task == "knowledge" else "linear"
        fig.update_xaxes(title_text=AXES[task][0], type=scale, row=1, col=col)
        fig.update_yaxes(title_text=AXES[task][1], type=scale, row=1, col=col)
    return finish(fig, "The duel: damage to the target against damage to what is kept")

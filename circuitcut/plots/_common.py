"""What every view shares: colours, titles and axes, layer axes that stay readable at 30 layers, files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from torch import Tensor

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
FORGET, RETAIN = "#d62728", "#1f77b4"
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


def part_label(part: str) -> str:
    return _PART_LABELS.get(part, part)


def compact(values: Tensor) -> np.ndarray:
    """float32 numpy: plotly writes it as base64, which keeps 46k-point HTML files small."""
    return values.detach().float().cpu().numpy()


def save_figure(fig: go.Figure, out_dir: str | Path, name: str, png: bool = True) -> list[Path]:
    """``name.html`` (plotly.js from the CDN, so a file stays small) and, unless ``png=False``, ``name.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.html"]
    fig.write_html(paths[0], include_plotlyjs="cdn")
    if png:
        paths.append(out / f"{name}.png")
        fig.write_image(paths[1], scale=1.5)
    return paths

"""What every view shares: colours, titles and axes, layer axes that stay readable at 30 layers, files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
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


def log_axis(lo: float, hi: float, pad: tuple[float, float] = (0.05, 0.05)) -> dict:
    """A log axis over ``[lo, hi]`` (``pad`` decades beyond each end) whose every tick is labelled in full.

    Plotly's automatic log ticks label the minor ones with their leading digit only ('2, 10, 9, ... 1,
    9'), unreadable at README size. These ticks are the first of: powers of ten (every other one or
    sparser past eight decades), 1-2-5, 1-2-3-5 or 1-to-9 steps, that puts at least three ticks (else two)
    inside the range, no two closer than an eighth of the axis.
    """
    low, high = math.log10(lo) - pad[0], math.log10(hi) + pad[1]
    span, decades = high - low, range(math.floor(low), math.ceil(high) + 1)
    stride = max(1, math.ceil(span / 8))
    tiers = [[10.0 ** e for e in decades if e % stride == 0 and low <= e <= high]]
    tiers += [[m * 10.0 ** e for e in decades for m in mantissas if low <= math.log10(m) + e <= high]
              for mantissas in ((1, 2, 5), (1, 2, 3, 5), range(1, 10))]

    def readable(ticks: list[float], least: int) -> bool:
        return len(ticks) >= least and np.diff(np.log10(ticks)).min() >= span / 8

    ticks = next((t for least in (3, 2) for t in tiers if readable(t, least)), tiers[0])
    return dict(type="log", range=[low, high], tickvals=ticks, ticktext=[_tick_text(t) for t in ticks])


def _tick_text(value: float) -> str:
    """'0.05', '1', '2,000'; beyond that, powers of ten (a 1e-07 reads as an error message)."""
    exponent = math.floor(math.log10(value) + 1e-9)
    if -3 <= exponent <= 6:
        return f"{value:,.0f}" if value >= 1 else f"{value:g}"
    mantissa = f"{value / 10.0 ** exponent:.0f}×" if round(value / 10.0 ** exponent) != 1 else ""
    return f"{mantissa}10<sup>{exponent}</sup>"


def part_label(part: str) -> str:
    return _PART_LABELS.get(part, part)


def compact(values: Tensor) -> np.ndarray:
    """float32 numpy: plotly writes it as base64, which keeps 46k-point HTML files small."""
    return values.detach().float().cpu().numpy()


PLOTLY_JS = "plotly.min.js"


def save_figure(fig: go.Figure, out_dir: str | Path, name: str, png: bool = True) -> list[Path]:
    """``name.html`` and, unless ``png=False``, ``name.png``.

    The HTML loads plotly.js from a ``plotly.min.js`` beside it, written once per folder: a file stays
    small, and the folder opens without a network (from a CDN, every plot of an offline machine is blank).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _bundle_plotly_js(out)
    paths = [out / f"{name}.html"]
    fig.write_html(paths[0], include_plotlyjs=PLOTLY_JS)
    if png:
        paths.append(out / f"{name}.png")
        fig.write_image(paths[1], scale=1.5)
    return paths


def _bundle_plotly_js(out: Path) -> None:
    """Write the plotly.js of the installed plotly into ``out``, unless the same one is already there.

    Not plotly's ``include_plotlyjs="directory"``: it keeps any plotly.min.js it finds, so a folder
    written again after a plotly upgrade would load new figures with an old plotly.js.
    """
    bundle, path = get_plotlyjs(), out / PLOTLY_JS
    if not path.exists() or path.read_text(encoding="utf-8") != bundle:
        path.write_text(bundle, encoding="utf-8")

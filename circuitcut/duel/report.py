"""A duel's results as tables: every point (:func:`points_frame`) and the methods x tasks table
(:func:`duel_table`, :func:`duel_markdown`), from the same rows.

The table compares the methods at one size per task, the learned neuron mask's: each other method's point with
the neuron count nearest to it, and ``random``, random masks of that selective-pruning point's size per site.
``target`` and ``control`` are the damage to what is forgotten and to what is kept (docs/metrics.md): whole-tail
dPPL % of TargetKG and never-seen ControlKG on the knowledge task, top-1 drop % of the forget and retain
evaluation splits on the corpus task, where ``selectivity`` is their difference.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from circuitcut.duel.run import DuelResult

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ("task", "method", "granularity", "units", "target", "control", "selectivity", "lm", "paraphrase",
           "target_top10", "random_target", "random_control")
"""The columns of both frames; a figure a task does not measure is NaN (``selectivity``: corpus only; ``lm``,
``paraphrase``, ``target_top10``: knowledge only)."""


def point_rows(result: DuelResult) -> list[dict]:
    """One row per point of every method on every task, with :data:`COLUMNS`."""
    return [{c: {"task": task, "method": method, **point}.get(c, math.nan) for c in COLUMNS}
            for task, cells in result.points.items() for method, points in cells.items() for point in points]


def table_rows(result: DuelResult) -> list[dict]:
    """One row per method and task (and ``random``), at the learned neuron mask's size on that task."""
    rows = []
    by_task: dict[str, list[dict]] = {}
    for row in point_rows(result):
        by_task.setdefault(row["task"], []).append(row)
    for task, points in by_task.items():
        learned = [p for p in points if p["method"] == "learned"]
        size = learned[0]["units"] if learned else None
        for method in dict.fromkeys(p["method"] for p in points):
            candidates = [p for p in points if p["method"] == method]
            near = min(candidates, key=lambda p: abs(p["units"] - size)) if size is not None else candidates[-1]
            rows.append(near)
            if method == "selective":
                rows.append({**near, "method": "random", "target": near["random_target"],
                             "control": near["random_control"],
                             "selectivity": near["random_target"] - near["random_control"] if task == "corpus"
                             else math.nan, "lm": math.nan, "paraphrase": math.nan, "target_top10": math.nan})
    return rows


def points_frame(result: DuelResult) -> pd.DataFrame:
    """:func:`point_rows` as a pandas DataFrame."""
    import pandas as pd

    return pd.DataFrame(point_rows(result), columns=list(COLUMNS))


def duel_table(result: DuelResult) -> pd.DataFrame:
    """:func:`table_rows` as a pandas DataFrame: the methods x tasks table."""
    import pandas as pd

    return pd.DataFrame(table_rows(result), columns=list(COLUMNS))


def duel_markdown(result: DuelResult) -> str:
    """The methods x tasks table in markdown (percent figures to one decimal; NaN as ``-``)."""
    rows = table_rows(result)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row[c], signed=c != "target_top10") for c in COLUMNS) + " |")
    return "\n".join(lines)


def duel_caption(result: DuelResult) -> str:
    """The figure's caption: per task, each method's damage to the target and to what is kept, at the table's sizes."""
    parts, table = [], table_rows(result)
    for task in dict.fromkeys(r["task"] for r in table):
        rows = [r for r in table if r["task"] == task]
        what = ("TargetKG / never-seen ControlKG whole-tail dPPL %" if task == "knowledge"
                else "forget / retain top-1 drop %, selectivity")
        cells = []
        for r in rows:
            unit = "weights" if r["granularity"] == "weight" else "neurons"
            sel = "" if math.isnan(r["selectivity"]) else f", {r['selectivity']:+.1f}"
            cells.append(f"{r['method']} ({r['units']:,} {unit}) {r['target']:+.1f} / {r['control']:+.1f}{sel}")
        parts.append(f"{task} task ({what}): " + "; ".join(cells))
    target = result.config.target
    return (f"Every method on both tasks ({target}; {result.config.forget} vs {result.config.retain}), at the "
            "learned neuron mask's size (random: masks of selective pruning's size per site). " + ". ".join(parts) + ".")


def _cell(value, signed: bool) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:+.1f}" if signed else f"{value:.1f}"
    return str(value)

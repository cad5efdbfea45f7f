"""A pruning run's results as a table, one row per step and method: the rows that both the text summary (what
the CLI prints) and the pandas frame are made from, so the two cannot disagree."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from circuitcut.pruning.run import PruningResult

DROPS = ("top1", "top10")
"""The metrics whose drops from the unpruned model, and selectivity from them, each row gives."""


def drop(before: float, after: float) -> float:
    """Relative drop in percent of the original value (docs/metrics.md)."""
    return (before - after) / before * 100 if before else 0.0


def drops(base: dict, entry: dict, metric: str) -> tuple[float, float]:
    """The forget and retain drops of ``metric`` from history entry ``base`` to ``entry``."""
    return drop(base["forget"][metric], entry["forget"][metric]), drop(base["retain"][metric], entry["retain"][metric])


def step_rows(history: list[dict]) -> list[dict]:
    """One flat row per history entry: ``method``, ``step``; ``pruned``, the fraction of neurons removed
    (mean over site kinds) and ``pruned_<kind>``; every forget and retain metric (``forget_top1``,
    ``retain_loss`` ...); and per metric of :data:`DROPS` the forget and retain drops from the unpruned
    model (the first entry) and selectivity, their difference (``selectivity_top1`` ...)."""
    rows = []
    for entry in history:
        fraction = entry["fraction"]
        row = {"method": entry["method"], "step": entry["step"],
               "pruned": sum(fraction.values()) / max(len(fraction), 1),
               **{f"pruned_{kind}": value for kind, value in fraction.items()},
               **{f"{data}_{name}": value for data in ("forget", "retain") for name, value in entry[data].items()}}
        for metric in DROPS:
            forget, retain = drops(history[0], entry, metric)
            row |= {f"forget_drop_{metric}": forget, f"retain_drop_{metric}": retain,
                    f"selectivity_{metric}": forget - retain}
        rows.append(row)
    return rows


def steps_frame(history: list[dict]) -> pd.DataFrame:
    """:func:`step_rows` as a pandas DataFrame."""
    import pandas as pd  # here, so that importing circuitcut does not import pandas

    return pd.DataFrame(step_rows(history))


def summary_text(result: PruningResult) -> str:
    """A plain-text table of a run, one row per step and method, plus each method's selectivity."""
    lines = [f"{'method':9s} {'step':>4s} {'pruned':>7s} | {'forget top1':>11s} {'retain top1':>11s} "
             f"| {'forget ppl':>10s} {'retain ppl':>10s}"]
    for row in step_rows(result.history):
        lines.append(f"{row['method']:9s} {row['step']:4d} {100 * row['pruned']:6.1f}% | {row['forget_top1']:10.1f}% "
                     f"{row['retain_top1']:10.1f}% | {row['forget_perplexity']:10.2f} {row['retain_perplexity']:10.2f}")
    for method in result.masks:
        s = result.selectivity(method)
        lines.append(f"selectivity ({method}): {s['selectivity']:.1f} at step {s['step']} "
                     f"(forget drop {s['forget_drop']:.1f}%, retain drop {s['retain_drop']:.1f}%)")
    lines += [f"{name} corpus {getattr(result.config, name)}: {note}"
              for name, notes in result.corpus_notes.items() for note in notes]
    return "\n".join(lines)

"""The duel: selective pruning, learned masks and greedy selection (and random masks) on the same two tasks,
every mask evaluated alike (issue 26).

``config.py`` (:class:`DuelConfig`, its fields the ``circuitcut duel`` flags), ``tasks.py`` (the knowledge and
corpus tasks: their data and evaluation), ``methods.py`` (each method's masks), ``run.py`` (:func:`run_duel`, the
resumable run folder), ``report.py`` (the methods x tasks table); the figure is ``plots.duel_scatter``.

Example:
    >>> result = run_duel(model, DuelConfig(target="isa:animal", sizes=(20, 80)), "runs/duel")
    >>> print(duel_markdown(result))
"""

from typing import TYPE_CHECKING

from circuitcut._lazy import lazy_exports

__all__ = ["DuelConfig", "DuelResult", "Task", "duel_caption", "duel_markdown", "duel_table", "points_frame",
           "run_duel", "windows_as_facts"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "circuitcut.duel.config": ("DuelConfig",),
    "circuitcut.duel.run": ("DuelResult", "run_duel"),
    "circuitcut.duel.tasks": ("Task", "windows_as_facts"),
    "circuitcut.duel.report": ("duel_caption", "duel_markdown", "duel_table", "points_frame"),
})

if TYPE_CHECKING:
    from circuitcut.duel.config import DuelConfig
    from circuitcut.duel.report import duel_caption, duel_markdown, duel_table, points_frame
    from circuitcut.duel.run import DuelResult, run_duel
    from circuitcut.duel.tasks import Task, windows_as_facts

"""Selective pruning (Pochinkov & Schoots, arXiv 2403.01267), with a random-pruning baseline: remove, step by
step, the neurons (or attention heads) most important to a *forget* corpus relative to a *retain* corpus.

Example:
    >>> from circuitcut.pruning import PruningConfig, prune, PruningResult
    >>> result = prune(model, PruningConfig(forget="python", retain="prose", steps=3), out_dir="runs/p")
    >>> result.selectivity("selective")["selectivity"]     # max over steps of forget drop - retain drop
    >>> with result.masks["selective"].remaining(model):    # run the pruned model
    ...     logits = model(tokens)
    >>> PruningResult.load("runs/p", model)                 # refuses masks of another model

``config.py`` (settings), ``data.py`` (token splits), ``scoring.py`` (scores, ranking), ``run.py`` (the loop,
run folders), ``report.py`` (the rows of the table and frame). The names are imported on first use, so
the command line reads :mod:`circuitcut.pruning.config` (its flags) without importing torch.
"""

from typing import TYPE_CHECKING

from circuitcut._lazy import lazy_exports

__all__ = [
    "DEFAULT_EPS",
    "PruningConfig",
    "PruningData",
    "PruningResult",
    "next_removal",
    "prune",
    "random_scores",
    "run_settings",
    "selectivity_scores",
    "top_unpruned",
    "unit_scores",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "circuitcut.pruning.config": ("DEFAULT_EPS", "PruningConfig"),
    "circuitcut.pruning.data": ("PruningData",),
    "circuitcut.pruning.run": ("PruningResult", "prune", "run_settings"),
    "circuitcut.pruning.scoring": ("next_removal", "random_scores", "selectivity_scores", "top_unpruned",
                                  "unit_scores"),
})

if TYPE_CHECKING:  # what type checkers and editors see, as eager imports would
    from circuitcut.pruning.config import DEFAULT_EPS, PruningConfig
    from circuitcut.pruning.data import PruningData
    from circuitcut.pruning.run import PruningResult, prune, run_settings
    from circuitcut.pruning.scoring import next_removal, random_scores, selectivity_scores, top_unpruned, unit_scores

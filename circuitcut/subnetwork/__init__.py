"""Knowledge-critical subnetworks (Bayazit et al., arXiv 2310.03084): learned masks whose removal
erases a set of knowledge-graph facts while keeping other facts and general language modelling.

Example:
    >>> from circuitcut.subnetwork import SubnetworkConfig, find_subnetwork, SubnetworkResult, compare
    >>> result = find_subnetwork(model, SubnetworkConfig(target="isa:animal"), "runs/animal")
    >>> result.metrics["change"]["target"]["dppl"]          # TargetKG whole-tail dPPL of the remaining model
    >>> with result.mask.remaining(model):                    # run the remaining model
    ...     logits = model(tokens)
    >>> result.mask.remove_from(model)                        # or remove it from the weights for good
    >>> other = SubnetworkResult.load("runs/food", model)     # refuses a mask of another model
    >>> compare(result.mask, other.mask)["overall"]            # Jaccard overlap
    >>> preset("paper", target="isa:food")                    # the paper's released-code settings

The names are imported on first use, so the command line reads :mod:`circuitcut.subnetwork.config`
(its flags) without importing torch.
"""

from typing import TYPE_CHECKING

from circuitcut._lazy import lazy_exports

__all__ = [
    "GOALS",
    "PRESETS",
    "SubnetworkConfig",
    "SubnetworkData",
    "SubnetworkResult",
    "SubnetworkTrainer",
    "build_data",
    "compare",
    "evaluate_model",
    "evaluate_subnetwork",
    "find_subnetwork",
    "format_report",
    "missed_goals",
    "report_frame",
    "preset",
    "results_table",
    "seed_overlaps",
    "run_data",
    "saved_config",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "circuitcut.subnetwork.config": ("PRESETS", "SubnetworkConfig", "preset", "saved_config"),
    "circuitcut.subnetwork.data": ("SubnetworkData", "build_data"),
    "circuitcut.subnetwork.evaluation": ("compare", "evaluate_model", "evaluate_subnetwork"),
    "circuitcut.subnetwork.goals": ("GOALS", "missed_goals"),
    "circuitcut.subnetwork.report": ("format_report", "report_frame", "results_table", "seed_overlaps"),
    "circuitcut.subnetwork.run": ("SubnetworkResult", "find_subnetwork", "run_data"),
    "circuitcut.subnetwork.trainer": ("SubnetworkTrainer",),
})

if TYPE_CHECKING:  # what type checkers and editors see, as the eager imports were
    from circuitcut.subnetwork.config import PRESETS, SubnetworkConfig, preset, saved_config
    from circuitcut.subnetwork.data import SubnetworkData, build_data
    from circuitcut.subnetwork.evaluation import compare, evaluate_model, evaluate_subnetwork
    from circuitcut.subnetwork.goals import GOALS, missed_goals
    from circuitcut.subnetwork.report import format_report, report_frame, results_table, seed_overlaps
    from circuitcut.subnetwork.run import SubnetworkResult, find_subnetwork, run_data
    from circuitcut.subnetwork.trainer import SubnetworkTrainer

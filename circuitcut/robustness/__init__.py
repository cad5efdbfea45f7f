"""Is it really gone? Relearning, family generalisation and linear probes of what selective pruning and subnetworks remove.

Example:
    >>> from circuitcut.robustness import RelearnConfig, relearn
    >>> result = relearn(model, "runs/p", RelearnConfig(steps=16))   # a finished prune or subnet run
    >>> print(result.summary())                                       # steps to half-recovery per removal
    >>> from circuitcut.robustness import open_run, generalisation
    >>> report = generalisation(model, open_run("runs/animal", model))  # other facts of the family, a sibling
"""

from circuitcut.robustness.examples import Facts, OverlapError, Windows
from circuitcut.robustness.family import FamilyConfig, family_facts, format_generalisation, generalisation, sibling_spec
from circuitcut.robustness.probe import format_probe, probe, probe_accuracy
from circuitcut.robustness.relearn import (
    RelearnConfig, RelearnResult, RelearnTask, build_task, eval_steps, relearn, steps_to_recover,
)
from circuitcut.robustness.removal import Removal, surgery_pattern
from circuitcut.robustness.source import PruneRun, SubnetRun, open_run

__all__ = [
    "Facts", "FamilyConfig", "OverlapError", "PruneRun", "RelearnConfig", "RelearnResult", "RelearnTask", "Removal",
    "SubnetRun", "Windows", "build_task", "eval_steps", "family_facts", "format_generalisation", "format_probe",
    "generalisation", "open_run", "probe", "probe_accuracy", "relearn", "sibling_spec", "steps_to_recover", "surgery_pattern",
]

"""The bounds a knowledge-critical subnetwork should reach, and the ones a run's metrics miss.

Plain Python on a run's metrics.json: the atlas's tables (``Atlas.to_frame``) read it without importing torch.
"""

from __future__ import annotations

GOALS = {"sparsity %": (">=", 97.0), "target top-10 %": ("<=", 10.0), "paraphrased top-10 %": ("<=", 10.0),
         "TargetKG dPPL %": (">=", 100.0), "ControlKG never seen dPPL %": ("<=", 10.0), "ControlLM dPPL %": ("<=", 5.0)}
"""What a knowledge-critical subnetwork should reach on the embedded model (issue 10's bounds)."""
WEIGHT_SPARSITY_GOAL = 98.6
"""A weight mask's sparsity goal instead (the paper's figure)."""


def missed_goals(metrics: dict) -> list[str]:
    """The :data:`GOALS` a run misses, each with its value."""
    after = metrics["remaining"]
    values = {"sparsity %": metrics["sparsity"], "target top-10 %": after["target"]["top10"],
              "paraphrased top-10 %": after.get("target_paraphrase", {}).get("top10"),
              "TargetKG dPPL %": metrics["change"]["target"]["dppl"],
              "ControlKG never seen dPPL %": metrics["change"].get("control_new", {}).get("dppl"),
              "ControlLM dPPL %": metrics["change"].get("lm", {}).get("dppl")}
    weights = metrics.get("size", {}).get("granularity") == "weight"
    goals = GOALS | ({"sparsity %": (">=", WEIGHT_SPARSITY_GOAL)} if weights else {})
    missed = []
    for name, (sign, bound) in goals.items():
        value = values[name]
        if value is not None and (value < bound if sign == ">=" else value > bound):
            missed.append(f"{name} {value:.1f}")
    return missed

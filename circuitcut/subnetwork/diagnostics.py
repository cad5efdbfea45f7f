"""The quantities that decide whether a mask learns anything, logged with the training history.

Adam divides each score's step by the root mean square of its own gradient, so what moves a unit
is the *ratio* of a push to that unit's gradient noise, not the push's size. Adam already keeps
both moments per score (``exp_avg``, ``exp_avg_sq``), so the ratios cost nothing to read:

* ``snr``: ``|E[g]| / sqrt(E[g^2])`` per unit, median and 99th percentile over units (1: a steady
  push; pure noise gives about 0.18, the mean absolute value of Adam's running mean of unit-variance
  noise, ``sqrt((1 - beta1) / (1 + beta1) * 2 / pi)``);
* ``pull``: the sparsity term's gradient over ``sqrt(E[g^2])``, median over units: how hard the
  sparsity term pulls a typical unit relative to everything else it feels;
* ``push``: a running mean (the last ten or so steps) of ``-dL/dm``, the gradient of the other terms
  with respect to each unit's mask value: positive when removing the unit lowers the loss. Median,
  99th percentile and maximum over units, and ``push_noise``, the median standard deviation of that
  gradient from step to step. Under Adam only the sign of the total gradient steadily moves a score,
  so a unit joins the subnetwork when its push exceeds the per-unit sparsity weight (``above``
  counts those units): the weight belongs between the push of the many units that do not matter
  and that of the few that do;
* ``flips``: units that entered or left the evaluation mask since the previous record;
* ``gap``: percent of units where the last training sample differs from the evaluation mask.

Over tens of millions of weights every figure but ``flips`` and ``gap`` is taken on a fixed strided
subset of at most ``MAX_UNITS`` units (every unit of a neuron run), and the push moments are kept
for that subset only: ``above`` is then the subset's count times the stride, an estimate. For a
weight run's 53 M units this keeps 8 MB of moments instead of 424 MB.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from circuitcut.subnetwork.parametrize import MaskScores
from circuitcut.subnetwork.units import Indices, as_indices, changed

MAX_UNITS = 1_000_000


def stride(n_units: int) -> int:
    """Every how many units the subset of at most ``MAX_UNITS`` takes one."""
    return max(1, -(-n_units // MAX_UNITS))


def _subset(t: Tensor, step: int) -> Float[Tensor, " units"]:
    return t.detach().reshape(-1)[::step].float()


class Push:
    """Running first and second moments of ``-dL/dm`` per unit of the strided subset (bias-corrected, like Adam's)."""

    def __init__(self, beta: float = 0.9):
        self.beta, self.steps, self.stride = beta, 0, 1
        self.mean: dict[str, Tensor] = {}
        self.square: dict[str, Tensor] = {}

    def update(self, push: dict[str, Float[Tensor, "..."]]) -> None:
        if not self.steps:
            self.stride = stride(sum(g.numel() for g in push.values()))
        self.steps += 1
        for name, g in push.items():
            g = _subset(g, self.stride)
            if name not in self.mean:
                self.mean[name], self.square[name] = torch.zeros_like(g), torch.zeros_like(g)
            self.mean[name].mul_(self.beta).add_(g, alpha=1 - self.beta)
            self.square[name].mul_(self.beta).addcmul_(g, g, value=1 - self.beta)

    def summary(self, per_unit_weight: float) -> dict:
        if not self.steps:
            return {}
        bias = 1 - self.beta**self.steps
        mean = torch.cat([m / bias for m in self.mean.values()])
        square = torch.cat([q / bias for q in self.square.values()])
        return {
            "push_median": float(mean.median()),
            "push_p99": float(mean.quantile(0.99)),
            "push_max": float(mean.max()),
            "push_noise": float((square - mean * mean).clamp(min=0).sqrt().median()),
            "above": int((mean > per_unit_weight).sum()) * self.stride,
        }

    def state_dict(self) -> dict:
        return {"steps": self.steps, "stride": self.stride, "mean": self.mean, "square": self.square}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.mean, self.square = state["steps"], state["mean"], state["square"]
        self.stride = state.get("stride", 1)


def diagnose(
    scores: MaskScores,
    optimizer: torch.optim.Adam,
    push: Push,
    *,
    weight: float,
    mode: str,
    sampled: dict[str, Float[Tensor, "..."]],
    previous: Indices | None,
) -> tuple[dict, Indices]:
    """The record's diagnostic fields, and the evaluation mask to compare the next record with (as indices)."""
    beta1, beta2 = optimizer.param_groups[0]["betas"]
    step = stride(scores.n_units())
    per_unit = weight if mode == "per_unit" else weight / scores.n_units()
    snr, pull = [], []
    for s in scores.scores:
        state = optimizer.state.get(s, {})
        if "exp_avg" not in state:
            return {}, as_indices(scores.hard())
        t = float(state["step"])
        mean = _subset(state["exp_avg"], step) / (1 - beta1**t)
        rms = (_subset(state["exp_avg_sq"], step) / (1 - beta2**t)).sqrt().clamp(min=1e-30)
        p = torch.sigmoid(_subset(s, step))
        snr.append(mean.abs() / rms)
        pull.append(per_unit * p * (1 - p) / rms)  # d(weight * penalty)/d(score), as MaskScores.penalty defines it
    snr, pull = torch.cat(snr), torch.cat(pull)
    hard = scores.hard()
    n = scores.n_units()
    out = {
        "snr_median": float(snr.median()),
        "snr_p99": float(snr.quantile(0.99)),
        "pull_median": float(pull.median()),
        **push.summary(per_unit),
        "gap": 100 * sum(int((sampled[k].detach().bool() != hard[k]).sum()) for k in hard) / n,
    }
    if previous is not None:
        out["flips"] = changed(previous, hard)
    return out, as_indices(hard)

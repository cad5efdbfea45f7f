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

Medians over tens of millions of weights are taken on a fixed strided subset of at most
``MAX_UNITS`` units.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from circuitcut.subnetwork.parametrize import MaskScores

MAX_UNITS = 1_000_000


def _flat(tensors: list[Tensor]) -> Float[Tensor, " units"]:
    flat = torch.cat([t.detach().reshape(-1).float() for t in tensors])
    return flat[:: max(1, flat.numel() // MAX_UNITS)]


def sparsity_gradient(scores: MaskScores, weight: float, mode: str) -> list[Float[Tensor, "..."]]:
    """d(weight * penalty)/d(score) per site, as :meth:`MaskScores.penalty` defines the penalty."""
    scale = weight if mode == "per_unit" else weight / scores.n_units()
    return [scale * torch.sigmoid(s.detach()) * (1 - torch.sigmoid(s.detach())) for s in scores.scores]


class Push:
    """Running first and second moments of ``-dL/dm`` per unit (bias-corrected, like Adam's)."""

    def __init__(self, beta: float = 0.9):
        self.beta, self.steps = beta, 0
        self.mean: dict[str, Tensor] = {}
        self.square: dict[str, Tensor] = {}

    def update(self, push: dict[str, Float[Tensor, "..."]]) -> None:
        self.steps += 1
        for name, g in push.items():
            g = g.detach().float()
            if name not in self.mean:
                self.mean[name], self.square[name] = torch.zeros_like(g), torch.zeros_like(g)
            self.mean[name].mul_(self.beta).add_(g, alpha=1 - self.beta)
            self.square[name].mul_(self.beta).add_(g * g, alpha=1 - self.beta)

    def summary(self, per_unit_weight: float) -> dict:
        if not self.steps:
            return {}
        bias = 1 - self.beta**self.steps
        mean = {n: m / bias for n, m in self.mean.items()}
        sd = [(self.square[n] / bias - m * m).clamp(min=0).sqrt() for n, m in mean.items()]
        flat = _flat(list(mean.values()))
        return {
            "push_median": float(flat.median()),
            "push_p99": float(flat.quantile(0.99)) if flat.numel() <= 16_000_000 else float("nan"),
            "push_max": max(float(m.max()) for m in mean.values()),
            "push_noise": float(_flat(sd).median()),
            "above": sum(int((m > per_unit_weight).sum()) for m in mean.values()),
        }

    def state_dict(self) -> dict:
        return {"steps": self.steps, "mean": self.mean, "square": self.square}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.mean, self.square = state["steps"], state["mean"], state["square"]


def diagnose(
    scores: MaskScores,
    optimizer: torch.optim.Adam,
    push: Push,
    *,
    weight: float,
    mode: str,
    sampled: dict[str, Float[Tensor, "..."]],
    previous: dict[str, Bool[Tensor, "..."]] | None,
) -> tuple[dict, dict[str, Bool[Tensor, "..."]]]:
    """The record's diagnostic fields, and the evaluation mask to compare the next record with."""
    beta1, beta2 = optimizer.param_groups[0]["betas"]
    means, rms = [], []
    for s in scores.scores:
        state = optimizer.state.get(s, {})
        if "exp_avg" not in state:
            return {}, scores.hard()
        t = float(state["step"])
        means.append(state["exp_avg"] / (1 - beta1**t))
        rms.append((state["exp_avg_sq"] / (1 - beta2**t)).sqrt().clamp(min=1e-30))
    snr = _flat([m.abs() / r for m, r in zip(means, rms)])
    pull = _flat([g / r for g, r in zip(sparsity_gradient(scores, weight, mode), rms)])
    hard = scores.hard()
    n = scores.n_units()
    out = {
        "snr_median": float(snr.median()),
        "snr_p99": float(snr.quantile(0.99)) if snr.numel() <= 16_000_000 else float("nan"),
        "pull_median": float(pull.median()),
        **push.summary(weight if mode == "per_unit" else weight / scores.n_units()),
        "gap": 100 * sum(int((sampled[k].detach().bool() != hard[k]).sum()) for k in hard) / n,
    }
    if previous is not None:
        out["flips"] = sum(int((previous[k] != hard[k]).sum()) for k in hard)
    return out, hard

"""Sparsity pressure on a toy objective whose answer is known, at a few thousand and at 200,000 units.

Each unit's mask value ``m`` enters a linear loss ``sum(c * m)`` with noisy coefficients: the 10
critical units gain 1 from being removed (``c = -1``), every other unit gains a little (``c = -0.01``,
as most units of a real model lower a suppression loss a little) under gradient noise of sd 0.05.
The answer is the 10 critical units. A per-unit sparsity weight between 0.01 and 1 finds them
whatever the number of units; the paper's mean penalty spreads its weight over all units, so at a
200,000 units (a pull of 1.5e-5 per unit) it no longer holds the rest back.
"""

from __future__ import annotations

import torch

from circuitcut.subnetwork.parametrize import MaskScores
from circuitcut.subnetwork.schedules import learning_rate, noise_scale, sparsity_weight

CRITICAL = 10


def train_toy(n_units: int, mode: str, weight: float, init_p: float, steps: int = 300) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    scores = MaskScores({"units": (n_units,)}, init_p=init_p)
    optimizer = torch.optim.Adam(scores.parameters(), lr=0.1)
    push = torch.full((n_units,), -0.01)
    push[:CRITICAL] = -1.0
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, 0.1, 0.05, "cosine")
        optimizer.zero_grad()
        m = scores.sample(noise=noise_scale(step, steps, 1.0, 0.0, 0.5), generator=gen)["units"]
        coef = push + 0.05 * torch.randn(n_units, generator=gen)
        loss = (coef * m).sum() + sparsity_weight(step, steps, weight, 2 * weight) * scores.penalty(mode)
        loss.backward()
        optimizer.step()
    return scores.hard()["units"]


def test_per_unit_weight_finds_the_critical_units_at_any_size():
    for n_units in (2_000, 200_000):
        found = train_toy(n_units, "per_unit", weight=0.1, init_p=0.03)
        assert found[:CRITICAL].all() and int(found.sum()) == CRITICAL, (n_units, int(found.sum()))


def test_mean_penalty_loses_its_hold_on_many_units():
    found = train_toy(200_000, "mean", weight=3.0, init_p=0.03)
    assert found[:CRITICAL].all() and int(found.sum()) > 20_000  # the incidental push wins almost everywhere

"""scripts/per_fact.py's bootstrap interval: the spread of a dPPL over resampled facts."""

from __future__ import annotations

import math

import pytest
import torch

from per_fact import bootstrap_dppl


def test_equal_damage_on_every_fact_leaves_no_interval():
    low, high = bootstrap_dppl(torch.full((100,), 0.1))
    assert low == pytest.approx(100 * (math.exp(0.1) - 1)) and high == pytest.approx(low)


def test_damage_on_a_few_facts_gives_a_wide_interval_around_the_estimate():
    increase = torch.zeros(100)
    increase[:5] = 2.0  # five facts carry all of it: another sample of facts may hold none or twice as many
    low, high = bootstrap_dppl(increase)
    estimate = 100 * (math.exp(increase.mean().item()) - 1)
    assert low < estimate / 2 and high > 1.5 * estimate
    assert bootstrap_dppl(increase) == (low, high)  # seeded

"""Per-step schedules: learning rate with warm-up and decay, sparsity weight, sampling noise."""

from __future__ import annotations

import pytest

from circuitcut.subnetwork.schedules import learning_rate, noise_scale, sparsity_weight


def test_learning_rate():
    assert learning_rate(0, 100, 0.2, 0.1) == pytest.approx(0.02)
    assert learning_rate(9, 100, 0.2, 0.1) == pytest.approx(0.2) == learning_rate(60, 100, 0.2, 0.1)
    cosine = [learning_rate(s, 100, 0.2, 0.1, "cosine") for s in range(100)]
    assert cosine[9] == pytest.approx(0.2) and cosine[-1] == pytest.approx(0.0, abs=1e-12)
    assert cosine[55] == pytest.approx(0.1, rel=0.05)  # half-way through the decay
    assert all(a >= b for a, b in zip(cosine[9:], cosine[10:]))


def test_sparsity_weight():
    assert sparsity_weight(0, 100, 2, 3) == 2 and sparsity_weight(49, 100, 2, 3) == 2
    assert sparsity_weight(99, 100, 2, 3) == pytest.approx(3)
    assert 2 < sparsity_weight(75, 100, 2, 3) < 3


def test_noise_scale():
    assert noise_scale(0, 100, 1.0, 0.0, 0.5) == 1.0
    assert noise_scale(25, 100, 1.0, 0.0, 0.5) == pytest.approx(0.5)
    assert noise_scale(50, 100, 1.0, 0.0, 0.5) == 0.0 == noise_scale(99, 100, 1.0, 0.0, 0.5)
    assert noise_scale(10, 100, 1.0, 1.0, 0.5) == 1.0  # a constant schedule (the paper's)
    assert noise_scale(0, 100, 1.0, 0.2, 0.0) == 0.2

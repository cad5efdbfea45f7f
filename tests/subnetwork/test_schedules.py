"""Per-step schedules: learning rate with warm-up and decay, sparsity weight, sampling noise."""

from __future__ import annotations

import pytest

from circuitcut.subnetwork import SubnetworkConfig
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


def test_a_shorter_run_is_the_same_run_compressed():
    """Every schedule is a fraction of the run and the learning rate scales with 1 / steps, so at the same
    fraction of a 60- and a 150-step run the noise and sparsity weight are equal and the scores have
    travelled equally far (the summed learning rate)."""
    runs = {n: SubnetworkConfig(steps=n) for n in (60, 150)}
    assert runs[60].peak_lr == pytest.approx(0.25) and runs[150].peak_lr == pytest.approx(0.1)
    travelled = {}
    for n, c in runs.items():
        lrs = [learning_rate(s, n, c.peak_lr, c.warmup, c.lr_schedule) for s in range(n)]
        travelled[n] = [sum(lrs[: int(f * n)]) for f in (0.2, 0.5, 0.8, 1.0)]
    assert travelled[60] == pytest.approx(travelled[150], rel=0.06)
    assert travelled[150][-1] > 3.5 > sum(learning_rate(s, 60, 0.1, 0.05, "cosine") for s in range(60))  # unscaled: no unit joins
    for f in (0.0, 0.2, 0.4, 0.6, 0.8):
        assert noise_scale(int(f * 60), 60, 1.0, 0.0, 0.5) == pytest.approx(noise_scale(int(f * 150), 150, 1.0, 0.0, 0.5), abs=0.02)
        assert sparsity_weight(int(f * 60), 60, 1.0, 2.0) == pytest.approx(sparsity_weight(int(f * 150), 150, 1.0, 2.0), abs=0.03)
    assert SubnetworkConfig(steps=60, lr_steps=None).peak_lr == 0.1

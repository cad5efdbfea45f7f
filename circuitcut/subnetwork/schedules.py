"""Per-step schedules of a subnetwork run: learning rate, sparsity weight, sampling noise.

Each is a pure function of the step, so a resumed run takes exactly the steps it would have taken.
"""

from __future__ import annotations

import math


def learning_rate(step: int, steps: int, lr: float, warmup: float, schedule: str = "constant") -> float:
    """Linear warm-up over the first ``warmup`` fraction of steps, then constant or cosine decay to 0."""
    n_warm = max(int(warmup * steps), 1)
    if step < n_warm:
        return lr * (step + 1) / n_warm
    if schedule == "constant":
        return lr
    progress = (step - n_warm + 1) / max(steps - n_warm, 1)
    return lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def sparsity_weight(step: int, steps: int, start: float, end: float) -> float:
    """``start`` over the first half of training, then rising linearly to ``end`` at the last step."""
    half = steps / 2
    if step < half:
        return start
    return start + (end - start) * (step - half) / max(steps - 1 - half, 1)


def noise_scale(step: int, steps: int, start: float, end: float, decay: float) -> float:
    """From ``start`` at step 0 linearly to ``end`` at ``decay * steps``, then ``end``."""
    n_decay = decay * steps
    if n_decay <= 0 or step >= n_decay:
        return end
    return start + (end - start) * step / n_decay

"""Hooks that change a site's activations: the one way both methods remove neurons while the model runs."""

from __future__ import annotations

from collections.abc import Callable

from jaxtyping import Float
from torch import Tensor

Hook = tuple[str, Callable[[Tensor, object], Tensor]]
"""A hook name and its function, as ``model.hooks(fwd_hooks=...)`` and ``run_with_hooks`` take them."""


class ScaleHook:
    """Multiply a site's activations by a per-neuron factor: ``activation * scale``.

    ``scale`` has the layer's neuron shape (``(d_mlp,)`` or ``(heads, d_head)``) and broadcasts over
    batch and position. A 0/1 scale is zero-ablation; a differentiable scale is a learned mask.
    """

    def __init__(self, scale: Float[Tensor, "*neuron"]):
        self.scale = scale

    def __call__(self, activation: Float[Tensor, "batch pos *neuron"], hook=None) -> Float[Tensor, "batch pos *neuron"]:
        return activation * self.scale.to(activation.dtype)


class FillHook(ScaleHook):
    """``activation * scale + offset``: a removed neuron (scale 0) takes the value ``offset`` gives it (its mean
    activation, for mean ablation) instead of 0."""

    def __init__(self, scale: Float[Tensor, "*neuron"], offset: Float[Tensor, "*neuron"]):
        super().__init__(scale)
        self.offset = offset

    def __call__(self, activation: Float[Tensor, "batch pos *neuron"], hook=None) -> Float[Tensor, "batch pos *neuron"]:
        return super().__call__(activation) + self.offset.to(activation.dtype)

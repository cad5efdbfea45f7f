"""The removal a learned mask trains through: each site multiplied by ``keep = 1 - m`` (weights or activations),
with ``keep`` changed between steps. A finished mask is a :class:`~circuitcut.masks.Mask`, the type every
method returns."""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.sites import GRANULARITIES, Granularity
from circuitcut.subnetwork.neuron_masks import NeuronRemover
from circuitcut.weight_masks import WeightRemover

Remover = WeightRemover | NeuronRemover
"""A context that multiplies each site by ``keep`` (weights or activations), changed with ``set_keep``."""


def remover(
    model: TransformerBridge, granularity: Granularity, keep: dict[str, Float[Tensor, "..."]]
) -> Remover:
    """The context manager that multiplies each site by ``keep`` (weights or activations)."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"Unknown granularity '{granularity}': choose from {', '.join(GRANULARITIES)}.")
    return (WeightRemover if granularity == "weight" else NeuronRemover)(model, keep)

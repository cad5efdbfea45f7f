"""Neuron-level masks: scale a site's activations by ``keep = 1 - m`` with :class:`~circuitcut.hooks.ScaleHook`.

A site is one layer's neurons of one kind, named by its hook (``blocks.L.mlp.hook_post``,
``blocks.L.attn.hook_v``), with the neurons flattened as everywhere in circuitcut.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, ExitStack

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.hooks import ScaleHook
from circuitcut.sites import ModelShape, SiteKind, check_kinds, hook_name, neuron_site

NEURON_KINDS: tuple[SiteKind, ...] = ("mlp", "attn_v")


def neuron_sites(shape: ModelShape, layers: list[int], kinds=NEURON_KINDS) -> dict[str, tuple[int, ...]]:
    return {hook_name(k, layer): (shape.n_neurons(k),) for k in check_kinds(kinds) for layer in layers}


class NeuronRemover(AbstractContextManager):
    """Temporarily scales each site's neurons by ``keep`` (set with :meth:`set_keep`) via hooks."""

    def __init__(self, model: TransformerBridge, keep: dict[str, Float[Tensor, " neuron"]]):
        self.model = model
        self.shape = ModelShape.of(model)
        self._step: dict[str, Tensor] = {}
        self.hooks = {name: ScaleHook(self._shaped(name, k)) for name, k in keep.items()}
        self._stack = ExitStack()

    def _shaped(self, name: str, keep: Tensor) -> Tensor:
        return keep.reshape(self.shape.neuron_shape(neuron_site(name)[1]))

    def set_keep(self, keep: dict[str, Float[Tensor, " neuron"]]) -> None:
        for name, k in keep.items():
            self.hooks[name].scale = self._shaped(name, k)

    def start_step(self, keep: dict[str, Float[Tensor, " neuron"]]) -> None:
        """Set a training step's ``keep``, whose gradient the step's backward passes gather."""
        self._step = {name: k.requires_grad_() for name, k in keep.items()}
        self.set_keep(self._step)

    def end_step(self) -> dict[str, Float[Tensor, " neuron"]]:
        """The gradient on each site's ``keep`` of the backward passes since :meth:`start_step`, for the
        sites that received one; every neuron is kept until the next ``set_keep``."""
        grads = {name: k.grad for name, k in self._step.items() if k.grad is not None}
        self.set_keep({name: torch.ones_like(k) for name, k in self._step.items()})
        self._step = {}
        return grads

    def __enter__(self) -> NeuronRemover:
        self._stack.enter_context(self.model.hooks(fwd_hooks=list(self.hooks.items())))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

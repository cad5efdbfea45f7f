"""Weight-level masks: multiply the weight matrices of chosen layers by a mask, removably or for good.

A site is one weight matrix, named by its bridge path: ``blocks.L.attn.{q,k,v,o}``,
``blocks.L.mlp.{gate,in,out}``. While a :class:`WeightRemover` is active, each target module's
``weight`` is a ``torch.nn.utils.parametrize`` parametrization ``W * keep`` (``keep = 1 - m``), so
whatever calls the module (the bridge, or the HF attention code) sees the masked weight and the
gradient reaches ``keep``; leaving the context restores the original ``Parameter`` untouched.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn
from torch.nn.utils import parametrize
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.sites import MATRICES, parse_site, site_name


def weight_module(model: TransformerBridge, name: str) -> nn.Module:
    """The module owning the weight of site ``name`` (the HF Linear behind the bridge component)."""
    layer, part = parse_site(name)
    module = model.blocks[layer]
    for attr in part.split("."):
        module = getattr(module, attr)
    return getattr(module, "original_component", module)


def weight_sites(model: TransformerBridge, layers: list[int], matrices: tuple[str, ...] = MATRICES) -> dict[str, tuple[int, ...]]:
    """Shapes of the weight matrices to mask; matrices a block lacks (no gate in GPT-2) are skipped."""
    unknown = [m for m in matrices if m not in MATRICES]
    if unknown:
        raise ValueError(f"Unknown weight matrices {unknown}: choose from {', '.join(MATRICES)}.")
    sites = {}
    for layer in layers:
        for matrix in matrices:
            block_part, proj = matrix.split(".")
            if hasattr(getattr(model.blocks[layer], block_part), proj):
                name = site_name(layer, matrix)
                sites[name] = tuple(weight_module(model, name).weight.shape)
    return sites


class _Keep(nn.Module):
    """Parametrization ``W -> W * keep``; ``keep`` is swapped in before each forward pass.

    ``masked``, when set, is that product computed once for the forwards of a training step (see
    :meth:`WeightRemover.start_step`), returned as it is.
    """

    def __init__(self, keep: Tensor):
        super().__init__()
        self.keep: Tensor | None = keep
        self.masked: Tensor | None = None

    def forward(self, weight: Float[Tensor, "out inp"]) -> Float[Tensor, "out inp"]:
        return self.masked if self.masked is not None else weight * self.keep.to(weight.dtype)


class WeightRemover(AbstractContextManager):
    """Temporarily multiplies each site's weight by ``keep`` (set with :meth:`set_keep`).

    Example:
        >>> with WeightRemover(model, keep) as remover:   # keep: {site: 1 - m}
        ...     logits = model(tokens)
    """

    def __init__(self, model: TransformerBridge, keep: dict[str, Float[Tensor, "out inp"]]):
        self.model = model
        self.params = {name: _Keep(k) for name, k in keep.items()}

    def set_keep(self, keep: dict[str, Float[Tensor, "out inp"]]) -> None:
        for name, k in keep.items():
            p = self.params[name]
            p.keep, p.masked = k, None

    def start_step(self, keep: dict[str, Float[Tensor, "out inp"]]) -> None:
        """Set a training step's ``keep``, whose buffers this takes over (their values are not read again).

        A step runs several forward passes with one ``keep``. Its product ``W * keep`` is computed
        here once, in ``keep``'s buffer, as a leaf that gathers every pass's gradient, and
        :meth:`end_step` multiplies that by ``W`` once: one product and one multiply per step, not per
        forward pass (each the size of the masked weights), and no tensor of that size besides the
        product and its gradient.
        """
        for name, k in keep.items():
            weight, p = self._original(name), self.params[name]
            p.keep = None
            product = k.mul_(weight) if k.dtype == weight.dtype else weight * k.to(weight.dtype)
            p.masked = product.requires_grad_()

    def end_step(self) -> dict[str, Float[Tensor, "out inp"]]:
        """The gradient on each site's ``keep`` of the backward passes since :meth:`start_step`
        (``dL/dkeep = dL/d(W * keep) * W``, in that gradient's buffer), for the sites that received one.
        The step's products go; every weight is kept until the next ``set_keep``."""
        grads = {}
        for name, p in self.params.items():
            weight = self._original(name)
            if p.masked is not None and p.masked.grad is not None:
                grads[name] = p.masked.grad.mul_(weight).float()
            p.keep, p.masked = torch.ones((), dtype=weight.dtype, device=weight.device), None
        return grads

    def _original(self, name: str) -> Tensor:
        return weight_module(self.model, name).parametrizations.weight.original

    def __enter__(self) -> WeightRemover:
        entered = []
        try:
            for name, p in self.params.items():
                # unsafe: skip parametrize's consistency probe, which would run W * keep once more
                parametrize.register_parametrization(weight_module(self.model, name), "weight", p, unsafe=True)
                entered.append(name)
        except BaseException:
            self._remove(entered)
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._remove(list(self.params))

    def _remove(self, names: list[str]) -> None:
        for name in names:
            module = weight_module(self.model, name)
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)


def touched_neurons(subnetwork: dict[str, Bool[Tensor, "out inp"]]) -> dict[int, Bool[Tensor, " neuron"]]:
    """Per layer with a masked feed-forward matrix, the neurons owning a subnetwork weight: a row of
    ``mlp.gate`` or ``mlp.in``, a column of ``mlp.out`` (a Linear weight is ``[out, in]``)."""
    touched: dict[int, Tensor] = {}
    for name, m in subnetwork.items():
        layer, part = parse_site(name)
        if part.startswith("mlp."):
            rows = m.any(dim=0) if part == "mlp.out" else m.any(dim=1)
            touched[layer] = touched[layer] | rows if layer in touched else rows
    return touched


def remove_weights(model: TransformerBridge, subnetwork: dict[str, Bool[Tensor, "out inp"]]) -> None:
    """Permanent surgery: zero every weight in the subnetwork (the model keeps the rest)."""
    with torch.no_grad():
        for name, m in subnetwork.items():
            weight = weight_module(model, name).weight
            weight.masked_fill_(m.to(weight.device), 0)

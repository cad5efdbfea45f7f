"""Neuron masks: which neurons are removed, applied as hooks or as weight surgery, saved with metadata.

A :class:`NeuronMask` holds, per site kind, a ``Bool[Tensor, "layer neuron"]`` where ``True`` means
*removed* (the polarity of a learned :class:`~circuitcut.subnetwork.SubnetworkMask` too). Both masks
share their verbs: ``with mask.remaining(model):`` runs the model without the removed units,
``mask.remove_from(model)`` removes them from the weights for good; both give the same logits
(tested). A neuron mask also gives its zero-ablation hooks (``mask.hooks(model)``) for
``model.hooks(...)`` / ``run_with_hooks``. Both take the model and refuse
one of another name or shape first: a hook for layers 0-1 fits any model with that width and
would edit the wrong model without a word.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from jaxtyping import Bool, Float
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.runs import atomic_path
from circuitcut.sites import ModelShape, SiteKind, check_kinds, hook_name

Hook = tuple[str, Callable[[Tensor, object], Tensor]]


class MaskMismatchError(ValueError):
    """A mask was made for a model of another name or shape."""


def check_same_model(shape: ModelShape, model: TransformerBridge, what: str = "mask", made: str = "made for") -> None:
    """Refuse a ``what`` made on a model of another name or shape than ``model``."""
    other = ModelShape.of(model)
    if other != shape:
        raise MaskMismatchError(
            f"This {what} was {made} {shape.name} ({shape.n_layers} layers, d_model {shape.d_model}, "
            f"d_mlp {shape.d_mlp}) but the model is {other.name} ({other.n_layers} layers, d_model "
            f"{other.d_model}, d_mlp {other.d_mlp}). Load the model the {what} was {made}."
        )


def save_mask_file(path: str | Path, shape: ModelShape, masks: dict[str, Bool[Tensor, "..."]], metadata: dict) -> None:
    """Boolean tensors as a safetensors file whose metadata names the model (written atomically)."""
    meta = {"model_shape": json.dumps(asdict(shape)), **metadata}
    tensors = {k: v.to(torch.uint8).contiguous() for k, v in masks.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={k: str(v) for k, v in meta.items()})


def read_mask_file(
    path: str | Path, what: str, required: tuple[str, ...] = ()
) -> tuple[ModelShape, dict[str, str], dict[str, Bool[Tensor, "..."]]]:
    """The model shape, metadata and boolean tensors of a file written by :func:`save_mask_file`."""
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    missing = [k for k in ("model_shape", *required) if k not in meta]
    if missing:
        raise MaskMismatchError(f"{path} is not a circuitcut {what} (no {'/'.join(missing)} metadata).")
    tensors = {k: v.bool() for k, v in load_file(str(path)).items()}
    return ModelShape(**json.loads(meta["model_shape"])), meta, tensors


class ScaleHook:
    """Multiply a site's activations by a per-neuron factor: ``activation * scale``.

    ``scale`` has the layer's neuron shape (``(d_mlp,)`` or ``(heads, d_head)``) and broadcasts over
    batch and position. A 0/1 scale is zero-ablation; a differentiable scale is a learned mask.
    """

    def __init__(self, scale: Float[Tensor, "*neuron"]):
        self.scale = scale

    def __call__(self, activation: Float[Tensor, "batch pos *neuron"], hook=None) -> Float[Tensor, "batch pos *neuron"]:
        return activation * self.scale.to(activation.dtype)


def scale_hooks(shape: ModelShape, scales: dict[SiteKind, Float[Tensor, "layer neuron"]]) -> list[Hook]:
    """One :class:`ScaleHook` per layer and site kind from flat per-layer scales."""
    return [
        (hook_name(kind, layer), ScaleHook(scale[layer].reshape(shape.neuron_shape(kind))))
        for kind, scale in scales.items()
        for layer in range(shape.n_layers)
    ]


@dataclass
class NeuronMask:
    """Removed neurons per site kind (``True`` = removed), for one model shape."""

    shape: ModelShape
    removed: dict[SiteKind, Bool[Tensor, "layer neuron"]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind, removed in self.removed.items():
            expected = (self.shape.n_layers, self.shape.n_neurons(kind))
            if tuple(removed.shape) != expected:
                raise MaskMismatchError(
                    f"The {kind} mask has shape {tuple(removed.shape)} but {self.shape.name} needs {expected} "
                    f"(layers, neurons per layer): the mask was not made for this model shape."
                )

    @classmethod
    def empty(cls, shape: ModelShape, kinds) -> NeuronMask:
        return cls(
            shape,
            {k: torch.zeros(shape.n_layers, shape.n_neurons(k), dtype=torch.bool) for k in check_kinds(kinds)},
        )

    def copy(self) -> NeuronMask:
        return NeuronMask(self.shape, {k: v.clone() for k, v in self.removed.items()})

    def fraction(self) -> dict[SiteKind, float]:
        """Fraction of each kind's neurons that are removed."""
        return {k: v.float().mean().item() for k, v in self.removed.items()}

    def per_layer(self) -> dict[SiteKind, list[int]]:
        """Removed-neuron count per layer, per kind."""
        return {k: v.sum(dim=1).tolist() for k, v in self.removed.items()}

    def hooks(self, model: TransformerBridge) -> list[Hook]:
        """Zero-ablation hooks for ``model.hooks(fwd_hooks=...)`` or ``run_with_hooks``, on the
        model's device; refuses a model other than the one the mask was made for.

        Example:
            >>> with model.hooks(fwd_hooks=mask.hooks(model)):
            ...     logits = model(tokens)
        """
        self.check_model(model)
        device = next(model.parameters()).device
        keep = {k: (~v).float().to(device) for k, v in self.removed.items() if v.any()}
        return scale_hooks(self.shape, keep)

    def remaining(self, model: TransformerBridge) -> AbstractContextManager:
        """Run the model without the removed neurons inside this context (hooks; weights untouched).

        Example:
            >>> with mask.remaining(model):
            ...     logits = model(tokens)
        """
        hooks = self.hooks(model)
        return model.hooks(fwd_hooks=hooks) if hooks else nullcontext()

    def remove_from(self, model: TransformerBridge) -> None:
        """Remove the neurons from the model's weights, in place (see ``sites`` for which weights)."""
        self.check_model(model)
        with torch.no_grad():
            for kind, removed in self.removed.items():
                for layer in range(self.shape.n_layers):
                    idx = removed[layer].nonzero().flatten()
                    if len(idx):
                        _SURGERY[kind](model.blocks[layer], idx, self.shape)

    def check_model(self, model: TransformerBridge) -> None:
        check_same_model(self.shape, model)

    def save(self, path: str | Path, metadata: dict | None = None) -> None:
        """Write a safetensors file whose metadata names the model (written atomically)."""
        save_mask_file(path, self.shape, self.removed, metadata or {})

    @classmethod
    def load(cls, path: str | Path, model: TransformerBridge | None = None) -> NeuronMask:
        """Read a mask; with ``model``, refuse it unless it was made for that model."""
        shape, _, removed = read_mask_file(path, "neuron mask")
        mask = cls(shape, removed)
        if model is not None:
            mask.check_model(model)
        return mask


def _weight_of(bridge_component) -> nn.Module:
    return getattr(bridge_component, "original_component", bridge_component)


def _zero_outputs(module: nn.Module, idx: Tensor) -> None:
    """Zero output features ``idx`` of a Linear (rows) or a GPT-2 Conv1D (columns), with bias."""
    if isinstance(module, nn.Linear):
        module.weight[idx, :] = 0
    elif type(module).__name__ == "Conv1D":
        module.weight[:, idx] = 0
    else:
        raise NotImplementedError(f"Weight surgery does not know {type(module).__name__}; use mask.hooks().")
    if getattr(module, "bias", None) is not None:
        module.bias[idx] = 0


def _zero_inputs(module: nn.Module, idx: Tensor) -> None:
    """Zero input features ``idx`` of a Linear (columns) or a GPT-2 Conv1D (rows)."""
    if isinstance(module, nn.Linear):
        module.weight[:, idx] = 0
    elif type(module).__name__ == "Conv1D":
        module.weight[idx, :] = 0
    else:
        raise NotImplementedError(f"Weight surgery does not know {type(module).__name__}; use mask.hooks().")


def _cut_mlp(block, idx: Tensor, shape: ModelShape) -> None:
    for name in ("in", "gate"):
        if hasattr(block.mlp, name):
            _zero_outputs(_weight_of(getattr(block.mlp, name)), idx)
    _zero_inputs(_weight_of(block.mlp.out), idx)


def _cut_attn_v(block, idx: Tensor, shape: ModelShape) -> None:
    # Zeroing the value row (and bias) makes the value dimension 0 for every query head that reads
    # it; the output-projection columns that read it then see only zeros.
    _zero_outputs(_weight_of(block.attn.v), idx)
    group = shape.n_heads // shape.n_key_value_heads
    kv_head, dim = idx // shape.d_head, idx % shape.d_head
    query_heads = (kv_head[:, None] * group + torch.arange(group)).flatten()
    _zero_inputs(_weight_of(block.attn.o), query_heads * shape.d_head + dim.repeat_interleave(group))


def _cut_attn_z(block, idx: Tensor, shape: ModelShape) -> None:
    _zero_inputs(_weight_of(block.attn.o), idx)


_SURGERY = {"mlp": _cut_mlp, "attn_v": _cut_attn_v, "attn_z": _cut_attn_z}

"""Weight surgery for neurons: zero the weights a removed neuron owns (see :mod:`circuitcut.sites`), so the
model computes without it for good, exactly as a zero-ablation hook would."""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor, nn

from circuitcut.sites import ModelShape, SiteKind


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


@torch.no_grad()
def cut_neurons(model, shape: ModelShape, kind: SiteKind, layer: int, idx: Int[Tensor, " n"]) -> None:
    """Zero the weights neurons ``idx`` (flat indices) of ``kind`` at ``layer`` own, in place."""
    if len(idx):
        _SURGERY[kind](model.blocks[layer], idx, shape)

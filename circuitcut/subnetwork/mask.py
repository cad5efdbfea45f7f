"""A learned subnetwork as a hard mask: sizes, removal (temporary or permanent), random twins, overlap, files.

``subnetwork[site]`` is ``True`` where a unit (weight or neuron) belongs to the subnetwork, which is
what gets removed (``True`` = removed, as in :class:`~circuitcut.masks.NeuronMask`, with the same
verbs ``remaining`` and ``remove_from``). The *remaining model* is the original with the subnetwork
removed: every unit multiplied by ``1 - m``.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Bool, Float
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.masks import MaskMismatchError, NeuronMask, check_same_model, read_mask_file, save_mask_file
from circuitcut.overlap import jaccard_summary
from circuitcut.sites import ModelShape, hook_name, parse_site
from circuitcut.subnetwork.config import GRANULARITIES, Granularity
from circuitcut.subnetwork.neuron_masks import NeuronRemover, remove_neurons, to_neuron_mask
from circuitcut.subnetwork.weight_masks import WeightRemover, remove_weights, touched_neurons

Remover = WeightRemover | NeuronRemover
"""A context that multiplies each site by ``keep`` (weights or activations), changed with ``set_keep``."""


def remover(
    model: TransformerBridge, granularity: Granularity, keep: dict[str, Float[Tensor, "..."]]
) -> Remover:
    """The context manager that multiplies each site by ``keep`` (weights or activations)."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"Unknown granularity '{granularity}': choose from {', '.join(GRANULARITIES)}.")
    return (WeightRemover if granularity == "weight" else NeuronRemover)(model, keep)


@dataclass
class SubnetworkMask:
    """Which units of which sites form the subnetwork, for one model shape."""

    shape: ModelShape
    granularity: Granularity
    subnetwork: dict[str, Bool[Tensor, "..."]]

    # sizes ---------------------------------------------------------------------------------------
    def n_units(self) -> int:
        return sum(m.numel() for m in self.subnetwork.values())

    def n_subnetwork(self) -> int:
        return sum(int(m.sum()) for m in self.subnetwork.values())

    def sparsity(self) -> float:
        """Percent of maskable units *not* in the subnetwork (docs/metrics.md)."""
        return 100 * (1 - self.n_subnetwork() / self.n_units())

    def per_site(self) -> dict[str, dict]:
        """Subnetwork size per site (weight matrix, or one layer's neurons of one kind)."""
        return {n: _size(int(m.sum()), m.numel()) for n, m in self.subnetwork.items()}

    def per_layer(self) -> dict[int, dict]:
        counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for n, m in self.subnetwork.items():
            counts[parse_site(n)[0]][0] += int(m.sum())
            counts[parse_site(n)[0]][1] += m.numel()
        return {layer: _size(*c) for layer, c in sorted(counts.items())}

    def per_part(self) -> dict[str, dict]:
        """Subnetwork size per matrix or neuron kind, summed over layers (``mlp.in``, ``attn.q`` ...)."""
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for n, m in self.subnetwork.items():
            counts[parse_site(n)[1]][0] += int(m.sum())
            counts[parse_site(n)[1]][1] += m.numel()
        return {part: _size(*c) for part, c in counts.items()}

    def summary(self) -> dict:
        return {
            "granularity": self.granularity,
            "n_units": self.n_units(),
            "n_subnetwork": self.n_subnetwork(),
            "sparsity": self.sparsity(),
            "per_layer": self.per_layer(),
            "per_part": self.per_part(),
            "per_site": self.per_site(),
        }

    # removal -------------------------------------------------------------------------------------
    def keep(self, device: torch.device | str | None = None) -> dict[str, Float[Tensor, "..."]]:
        return {n: (~m).float().to(device) for n, m in self.subnetwork.items()}

    def remaining(self, model: TransformerBridge) -> AbstractContextManager:
        """Run the *remaining* model inside this context; the model is restored afterwards.

        Example:
            >>> with result.mask.remaining(model):
            ...     logits = model(tokens)
        """
        self.check_model(model)
        return remover(model, self.granularity, self.keep(next(model.parameters()).device))

    def remove_from(self, model: TransformerBridge) -> None:
        """Permanently remove the subnetwork from the model's weights (in place)."""
        self.check_model(model)
        (remove_weights if self.granularity == "weight" else remove_neurons)(model, self.subnetwork)

    def to_neuron_mask(self) -> NeuronMask:
        """A neuron subnetwork as the :class:`NeuronMask` the pruning tools use (removed = subnetwork)."""
        if self.granularity != "neuron":
            raise ValueError("Only a neuron-level subnetwork converts to a NeuronMask.")
        return to_neuron_mask(self.shape, self.subnetwork)

    def touched_neurons(self) -> SubnetworkMask:
        """The feed-forward neurons a weight subnetwork touches, as a neuron subnetwork (whole neurons
        removed where the weight mask removes some of their weights)."""
        if self.granularity != "weight":
            raise ValueError("touched_neurons() reads a weight-level subnetwork; this one is neuron-level.")
        neurons = {hook_name("mlp", layer): m for layer, m in touched_neurons(self.subnetwork).items()}
        return SubnetworkMask(self.shape, "neuron", neurons)

    # comparison ----------------------------------------------------------------------------------
    def random_like(self, seed: int) -> SubnetworkMask:
        """A random mask with exactly as many subnetwork units per site (the baseline)."""
        gen = torch.Generator().manual_seed(seed)
        out = {}
        for n, m in self.subnetwork.items():
            flat = torch.zeros(m.numel(), dtype=torch.bool)
            flat[torch.randperm(m.numel(), generator=gen)[: int(m.sum())]] = True
            out[n] = flat.reshape(m.shape)
        return SubnetworkMask(self.shape, self.granularity, out)

    def jaccard(self, other: SubnetworkMask) -> dict:
        """Jaccard overlap |A & B| / |A | B| of two subnetworks, overall, per layer and per site."""
        if (other.shape, other.granularity, other.subnetwork.keys()) != (self.shape, self.granularity, self.subnetwork.keys()):
            raise MaskMismatchError("Only subnetworks of the same model, granularity and sites can be compared.")
        return jaccard_summary(self.subnetwork, other.subnetwork)

    # files ---------------------------------------------------------------------------------------
    def check_model(self, model: TransformerBridge) -> None:
        check_same_model(self.shape, model, "subnetwork", made="found on")

    def save(self, path: str | Path, metadata: dict | None = None) -> None:
        """A safetensors file whose metadata names the model and granularity (written atomically)."""
        save_mask_file(path, self.shape, self.subnetwork, {"granularity": self.granularity, **(metadata or {})})

    @classmethod
    def load(cls, path: str | Path, model: TransformerBridge | None = None) -> SubnetworkMask:
        """Read a subnetwork; with ``model``, refuse it unless it was found on that model."""
        shape, meta, subnetwork = read_mask_file(path, "subnetwork mask", required=("granularity",))
        mask = cls(shape, meta["granularity"], subnetwork)  # type: ignore[arg-type]
        if model is not None:
            mask.check_model(model)
        return mask


def _size(n_subnetwork: int, n_units: int) -> dict:
    return {"subnetwork": n_subnetwork, "units": n_units, "percent": 100 * n_subnetwork / max(n_units, 1)}

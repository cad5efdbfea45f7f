"""Removals: which units of which sites a method removes, applied as hooks or as weight surgery, saved with metadata.

Every method (selective pruning, learned masks, greedy selection) returns a :class:`Mask`: per site name a
boolean tensor, ``True`` = removed. Its granularity says what a site is:

* ``neuron``: one layer's neurons of one kind, named by its hook (``blocks.L.mlp.hook_post``), a
  ``(n_neurons,)`` tensor with the neurons flattened as in :mod:`circuitcut.sites`;
* ``weight``: one weight matrix, named by its bridge path (``blocks.L.mlp.in``), a tensor of its shape.

Every mask has the same verbs: ``with mask.remaining(model):`` runs the model without the removed units
(hooks on neuron sites, or weights multiplied by ``1 - m``; restored afterwards), ``mask.remove_from(model)``
removes them from the weights for good (the same logits, tested), ``mask.hooks(model)`` gives a neuron
mask's hooks for ``model.hooks(...)`` / ``run_with_hooks``; ``per_layer``, ``per_part`` and ``sparsity``
count it; ``|``, ``&`` and ``-`` combine two masks; ``save`` and ``load`` keep it in a safetensors file
beside the model's shape (files written when pruning masks were keyed by site kind still load).

``fill`` is what a removed neuron's activation becomes: ``zero`` (ablation), or ``mean``, its mean activation
over a reference corpus (mean ablation, the taker library's offset ablation: :meth:`Mask.with_means`), which
keeps what the neuron adds to every input and removes only what it carries about particular ones.

Every verb that takes the model refuses one of another name or shape first: a hook for layers 0-1 fits
any model with that width and would edit the wrong model without a word.
"""

from __future__ import annotations

import json
import operator
from collections import defaultdict
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from jaxtyping import Bool, Float, Int
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.hooks import FillHook, Hook, ScaleHook
from circuitcut.overlap import jaccard_summary
from circuitcut.runs import atomic_path
from circuitcut.sites import (FILLS, GRANULARITIES, SITE_KINDS, Fill, Granularity, ModelShape, SiteKind, check_kinds,
                              hook_name, neuron_site, parse_site)
from circuitcut.stats import collect_stats
from circuitcut.surgery import cut_neurons
from circuitcut.weight_masks import WeightRemover, remove_weights, touched_neurons

_MEANS = "mean:"
"""Key prefix of a mean-filled mask's means in its file (beside the site names of the removed units)."""


class MaskMismatchError(ValueError):
    """A mask was made for a model of another name or shape."""


def check_same_model(shape: ModelShape, model: TransformerBridge, what: str = "mask") -> None:
    """Refuse a ``what`` made on a model of another name or shape than ``model``."""
    other = ModelShape.of(model)
    if other != shape:
        raise MaskMismatchError(
            f"This {what} was made for {shape.name} ({shape.n_layers} layers, d_model {shape.d_model}, "
            f"d_mlp {shape.d_mlp}) but the model is {other.name} ({other.n_layers} layers, d_model "
            f"{other.d_model}, d_mlp {other.d_mlp}). Load the model the {what} was made for."
        )


def by_site(shape: ModelShape, tensors: Mapping[SiteKind, Tensor]) -> dict[str, Tensor]:
    """Per-kind ``[layer, neuron]`` tensors as one ``(neuron,)`` tensor per neuron site."""
    return {hook_name(kind, layer): t[layer] for kind, t in tensors.items() for layer in range(shape.n_layers)}


def mean_activations(
    model: TransformerBridge, tokens: Int[Tensor, "n pos"], kinds, batch_size: int = 8
) -> dict[str, Float[Tensor, " neuron"]]:
    """Each neuron site's activation of ``kinds`` averaged over every position of ``tokens`` (the reference
    corpus of mean ablation), on the model as it is."""
    return by_site(ModelShape.of(model), collect_stats(model, tokens, kinds, batch_size=batch_size).mean())


@dataclass
class Mask:
    """Removed units per site (``True`` = removed), for one model shape."""

    shape: ModelShape
    granularity: Granularity
    removed: dict[str, Bool[Tensor, "..."]]
    fill: Fill = "zero"
    means: dict[str, Float[Tensor, " neuron"]] = field(default_factory=dict)
    """Per neuron site, the activation a removed neuron takes under ``fill="mean"``."""

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"Unknown granularity '{self.granularity}': choose from {', '.join(GRANULARITIES)}.")
        if self.fill not in FILLS:
            raise ValueError(f"Unknown fill '{self.fill}': choose from {', '.join(FILLS)}.")
        if self.granularity == "neuron":
            for name, m in self.removed.items():
                layer, kind = neuron_site(name)
                if layer >= self.shape.n_layers or tuple(m.shape) != (self.shape.n_neurons(kind),):
                    raise MaskMismatchError(
                        f"The {name} mask has shape {tuple(m.shape)} but {self.shape.name} has "
                        f"{self.shape.n_layers} layers of {self.shape.n_neurons(kind)} {kind} neurons: "
                        f"the mask was not made for this model shape.")
        if self.fill == "mean":
            if self.granularity != "neuron":
                raise ValueError("Mean fill sets neurons' activations; a weight mask can only zero its weights: "
                                 "use fill='zero'.")
            missing = sorted(self.removed.keys() - self.means.keys())
            if missing:
                raise ValueError(f"fill='mean' needs every site's mean activation; {missing[0]} has none: "
                                 f"make the mask with mask.with_means(mean_activations(model, tokens, kinds)).")

    @classmethod
    def from_kinds(cls, shape: ModelShape, removed: Mapping[SiteKind, Bool[Tensor, "layer neuron"]]) -> Mask:
        """A neuron mask from per-kind ``[layer, neuron]`` tensors: one site per layer and kind."""
        for kind, m in removed.items():
            expected = (shape.n_layers, shape.n_neurons(kind))
            if tuple(m.shape) != expected:
                raise MaskMismatchError(
                    f"The {kind} mask has shape {tuple(m.shape)} but {shape.name} needs {expected} "
                    f"(layers, neurons per layer): the mask was not made for this model shape.")
        return cls(shape, "neuron", by_site(shape, {k: m.bool().cpu() for k, m in removed.items()}))

    @classmethod
    def empty(cls, shape: ModelShape, kinds) -> Mask:
        """A neuron mask over every layer's sites of ``kinds`` that removes nothing."""
        return cls.from_kinds(
            shape, {k: torch.zeros(shape.n_layers, shape.n_neurons(k), dtype=torch.bool) for k in check_kinds(kinds)})

    def by_kind(self) -> dict[SiteKind, Bool[Tensor, "layer neuron"]]:
        """A neuron mask as per-kind ``[layer, neuron]`` tensors (a layer without a site removes nothing)."""
        self._neurons_only("by_kind()")
        out: dict[SiteKind, Tensor] = {}
        for name, m in self.removed.items():
            layer, kind = neuron_site(name)
            if kind not in out:
                out[kind] = torch.zeros(self.shape.n_layers, m.numel(), dtype=torch.bool)
            out[kind][layer] = m.cpu()
        return dict(sorted(out.items(), key=lambda kv: SITE_KINDS.index(kv[0])))

    def copy(self) -> Mask:
        return replace(self, removed={n: m.clone() for n, m in self.removed.items()}, means=dict(self.means))

    def with_means(self, means: Mapping[str, Float[Tensor, " neuron"]]) -> Mask:
        """This neuron mask with ``fill="mean"``: a removed neuron's activation becomes its value in ``means``
        (from :func:`mean_activations` over a reference corpus)."""
        self._neurons_only("with_means()")
        return replace(self, fill="mean", means={n: means[n].float().cpu() for n in self.removed if n in means})

    # sizes ---------------------------------------------------------------------------------------
    def n_units(self) -> int:
        return sum(m.numel() for m in self.removed.values())

    def n_removed(self) -> int:
        return sum(int(m.sum()) for m in self.removed.values())

    def sparsity(self) -> float:
        """Percent of maskable units *not* removed (docs/metrics.md)."""
        return 100 * (1 - self.n_removed() / self.n_units())

    def _sizes(self, key) -> dict:
        counts: dict = defaultdict(lambda: [0, 0])
        for n, m in self.removed.items():
            counts[key(n)][0] += int(m.sum())
            counts[key(n)][1] += m.numel()
        return {k: _size(*c) for k, c in counts.items()}

    def per_site(self) -> dict[str, dict]:
        """Removed units per site (weight matrix, or one layer's neurons of one kind)."""
        return self._sizes(lambda n: n)

    def per_layer(self) -> dict[int, dict]:
        """Removed units per layer, all its sites together."""
        return dict(sorted(self._sizes(lambda n: parse_site(n)[0]).items()))

    def per_part(self) -> dict[str, dict]:
        """Removed units per weight matrix (``mlp.in``, ``attn.q`` ...) or neuron kind (``mlp``), summed over layers."""
        return self._sizes(self._part)

    def fraction(self) -> dict[str, float]:
        """Fraction of each part's units (per neuron kind, or weight matrix) that are removed."""
        return {part: size["subnetwork"] / size["units"] for part, size in self.per_part().items()}

    def summary(self) -> dict:
        return {"granularity": self.granularity, "fill": self.fill, "n_units": self.n_units(),
                "n_subnetwork": self.n_removed(), "sparsity": self.sparsity(), "per_layer": self.per_layer(),
                "per_part": self.per_part(), "per_site": self.per_site()}

    def _part(self, name: str) -> str:
        return neuron_site(name)[1] if self.granularity == "neuron" else parse_site(name)[1]

    # set algebra ---------------------------------------------------------------------------------
    def _combine(self, other: Mask, op) -> Mask:
        """Site by site ``op`` of two masks' removed units (a site only one has removes nothing in the other);
        the result has this mask's fill."""
        if (other.shape, other.granularity) != (self.shape, self.granularity):
            raise MaskMismatchError("Only masks of the same model and granularity combine: convert a weight mask "
                                    "with touched_neurons() first.")
        names = dict.fromkeys([*self.removed, *other.removed])
        zeros = {n: torch.zeros_like(m) for n, m in {**self.removed, **other.removed}.items()}
        removed = {n: op(self.removed.get(n, zeros[n]), other.removed.get(n, zeros[n])) for n in names}
        return replace(self, removed=removed, means={**other.means, **self.means})

    def __or__(self, other: Mask) -> Mask:
        return self._combine(other, operator.or_)

    def __and__(self, other: Mask) -> Mask:
        return self._combine(other, operator.and_)

    def __sub__(self, other: Mask) -> Mask:
        return self._combine(other, lambda a, b: a & ~b)

    # removal -------------------------------------------------------------------------------------
    def keep(self, device: torch.device | str | None = None) -> dict[str, Float[Tensor, "..."]]:
        """``1 - m`` per site: what each unit is multiplied by."""
        return {n: (~m).float().to(device) for n, m in self.removed.items()}

    def hooks(self, model: TransformerBridge) -> list[Hook]:
        """Hooks that remove a neuron mask's neurons, for ``model.hooks(fwd_hooks=...)`` or ``run_with_hooks``,
        on the model's device; refuses a model other than the one the mask was made for.

        Example:
            >>> with model.hooks(fwd_hooks=mask.hooks(model)):
            ...     logits = model(tokens)
        """
        self._neurons_only("hooks()")
        self.check_model(model)
        device = next(model.parameters()).device
        hooks: list[Hook] = []
        for name, m in self.removed.items():
            if m.any():
                shape = self.shape.neuron_shape(neuron_site(name)[1])
                keep = (~m).float().to(device).reshape(shape)
                offset = (self.means[name] * m).to(device).reshape(shape) if self.fill == "mean" else None
                hooks.append((name, ScaleHook(keep) if offset is None else FillHook(keep, offset)))
        return hooks

    def remaining(self, model: TransformerBridge) -> AbstractContextManager:
        """Run the model without the removed units inside this context; the model is restored afterwards.

        Example:
            >>> with mask.remaining(model):
            ...     logits = model(tokens)
        """
        if self.granularity == "weight":
            self.check_model(model)
            return WeightRemover(model, self.keep(next(model.parameters()).device))
        hooks = self.hooks(model)
        return model.hooks(fwd_hooks=hooks) if hooks else nullcontext()

    def remove_from(self, model: TransformerBridge) -> None:
        """Remove the units from the model's weights, in place (see :mod:`circuitcut.sites` for a neuron's weights)."""
        self.check_model(model)
        if self.granularity == "weight":
            remove_weights(model, self.removed)
            return
        if self.fill == "mean":
            raise ValueError("Weight surgery zeroes neurons; a mean-filled mask sets them to their means, which "
                             "needs a bias the model may lack: use mask.remaining(model) or mask.hooks(model).")
        for name, m in self.removed.items():
            layer, kind = neuron_site(name)
            cut_neurons(model, self.shape, kind, layer, m.nonzero().flatten())

    def check_model(self, model: TransformerBridge) -> None:
        check_same_model(self.shape, model)

    def _neurons_only(self, verb: str) -> None:
        if self.granularity != "neuron":
            raise ValueError(f"{verb} reads neuron sites; this is a weight mask: use mask.remaining(model), "
                             f"mask.remove_from(model), or mask.touched_neurons() for its neurons.")

    # comparison ----------------------------------------------------------------------------------
    def random_like(self, seed: int) -> Mask:
        """A random mask with exactly as many removed units per site (the baseline)."""
        gen = torch.Generator().manual_seed(seed)
        out = {}
        for n, m in self.removed.items():
            flat = torch.zeros(m.numel(), dtype=torch.bool)
            flat[torch.randperm(m.numel(), generator=gen)[: int(m.sum())]] = True
            out[n] = flat.reshape(m.shape)
        return replace(self, removed=out)

    def jaccard(self, other: Mask) -> dict:
        """Jaccard overlap |A & B| / |A | B| of two masks, overall, per layer and per site."""
        if (other.shape, other.granularity, other.removed.keys()) != (self.shape, self.granularity, self.removed.keys()):
            raise MaskMismatchError("Only masks of the same model, granularity and sites can be compared.")
        return jaccard_summary(self.removed, other.removed)

    def touched_neurons(self) -> Mask:
        """The feed-forward neurons a weight mask touches, as a neuron mask (whole neurons removed where the
        weight mask removes some of their weights)."""
        if self.granularity != "weight":
            raise ValueError("touched_neurons() reads a weight-level mask; this one is neuron-level.")
        neurons = {hook_name("mlp", layer): m for layer, m in touched_neurons(self.removed).items()}
        return Mask(self.shape, "neuron", neurons)

    # files ---------------------------------------------------------------------------------------
    def save(self, path: str | Path, metadata: dict | None = None) -> None:
        """A safetensors file whose metadata names the model, granularity and fill (written atomically)."""
        meta = {"model_shape": json.dumps(asdict(self.shape)), "granularity": self.granularity, "fill": self.fill,
                **(metadata or {})}
        tensors = {n: m.to(torch.uint8).contiguous() for n, m in self.removed.items()}
        tensors |= {_MEANS + n: v.float().contiguous() for n, v in self.means.items()}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={k: str(v) for k, v in meta.items()})

    @classmethod
    def load(cls, path: str | Path, model: TransformerBridge | None = None) -> Mask:
        """Read a mask; with ``model``, refuse it unless it was made for that model.

        A file without a granularity is a pruning mask of before masks were one type: per site kind, a
        ``[layer, neuron]`` tensor."""
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if "model_shape" not in meta:
            raise MaskMismatchError(f"{path} is not a circuitcut mask (no model_shape metadata).")
        shape = ModelShape(**json.loads(meta["model_shape"]))
        tensors = load_file(str(path))
        if "granularity" not in meta:
            mask = cls.from_kinds(shape, {k: v.bool() for k, v in tensors.items()})
        else:
            removed = {n: v.bool() for n, v in tensors.items() if not n.startswith(_MEANS)}
            means = {n.removeprefix(_MEANS): v for n, v in tensors.items() if n.startswith(_MEANS)}
            mask = cls(shape, meta["granularity"], removed, meta.get("fill", "zero"), means)  # type: ignore[arg-type]
        if model is not None:
            mask.check_model(model)
        return mask


def _size(n_removed: int, n_units: int) -> dict:
    # "subnetwork": the key metrics.json has always used for the removed units
    return {"subnetwork": n_removed, "units": n_units, "percent": 100 * n_removed / max(n_units, 1)}

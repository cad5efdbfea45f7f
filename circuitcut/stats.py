"""Streaming, mergeable per-neuron activation statistics, collected by hooks.

Memory does not grow with the number of tokens: each site keeps five running sums per neuron.
Two :class:`NeuronStats` over disjoint tokens merge (``a + b``) into the statistics of their union,
which makes data-parallel collection a reduction (sum) of the fields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import torch
from einops import rearrange
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.masks import Hook
from circuitcut.sites import ModelShape, SiteKind, check_kinds, hook_name

Importance = Literal["freq", "abs", "rms", "std"]
IMPORTANCES: tuple[Importance, ...] = ("freq", "abs", "rms", "std")
_SUMS = ("positive", "sum", "sum_abs", "sum_sq")


@dataclass
class SiteSums:
    """Running sums for one site kind; every field is ``Float64[layer neuron]``."""

    positive: Float[Tensor, "layer neuron"]
    sum: Float[Tensor, "layer neuron"]
    sum_abs: Float[Tensor, "layer neuron"]
    sum_sq: Float[Tensor, "layer neuron"]

    @classmethod
    def zeros(cls, n_layers: int, n_neurons: int) -> SiteSums:
        return cls(*(torch.zeros(n_layers, n_neurons, dtype=torch.float64) for _ in _SUMS))

    def tensors(self) -> list[Tensor]:
        return [getattr(self, name) for name in _SUMS]


@dataclass
class NeuronStats:
    """Per-neuron statistics over ``count`` tokens, per site kind."""

    shape: ModelShape
    count: int = 0
    sums: dict[SiteKind, SiteSums] = field(default_factory=dict)

    @classmethod
    def empty(cls, shape: ModelShape, kinds) -> NeuronStats:
        return cls(shape, 0, {k: SiteSums.zeros(shape.n_layers, shape.n_neurons(k)) for k in check_kinds(kinds)})

    def __add__(self, other: NeuronStats) -> NeuronStats:
        if self.shape != other.shape or self.sums.keys() != other.sums.keys():
            raise ValueError("Cannot merge statistics of different models or site kinds.")
        return NeuronStats(
            self.shape,
            self.count + other.count,
            {k: SiteSums(*(a + b for a, b in zip(s.tensors(), other.sums[k].tensors()))) for k, s in self.sums.items()},
        )

    def importance(self, how: Importance) -> dict[SiteKind, Float[Tensor, "layer neuron"]]:
        """freq: share of tokens with a positive activation; abs: mean |x|; rms; std."""
        if self.count == 0:
            raise ValueError("No tokens were collected: statistics are empty.")
        n = self.count
        out = {}
        for kind, s in self.sums.items():
            if how == "freq":
                value = s.positive / n
            elif how == "abs":
                value = s.sum_abs / n
            elif how == "rms":
                value = (s.sum_sq / n).sqrt()
            elif how == "std":
                value = (s.sum_sq / n - (s.sum / n) ** 2).clamp_min(0).sqrt()
            else:
                raise ValueError(f"Unknown importance '{how}': choose from {', '.join(IMPORTANCES)}.")
            out[kind] = value.float()
        return out

    def mean(self) -> dict[SiteKind, Float[Tensor, "layer neuron"]]:
        return {k: (s.sum / max(self.count, 1)).float() for k, s in self.sums.items()}


class StatsHook:
    """Adds one layer's activations at the positions in ``token_mask`` to running sums."""

    def __init__(self, sums: SiteSums, layer: int):
        self.sums, self.layer = sums, layer
        self.token_mask: Bool[Tensor, "batch pos"] | None = None

    def __call__(self, activation: Float[Tensor, "batch pos *neuron"], hook=None) -> None:
        x = rearrange(activation.detach(), "batch pos ... -> (batch pos) (...)")
        if self.token_mask is not None:
            x = x[self.token_mask.flatten()]
        x = x.float()
        for acc, value in zip(
            self.sums.tensors(), ((x > 0).sum(0), x.sum(0), x.abs().sum(0), (x * x).sum(0))
        ):
            acc[self.layer] += value.to(acc.device, torch.float64)


def stats_hooks(stats: NeuronStats) -> list[tuple[str, StatsHook]]:
    return [
        (hook_name(kind, layer), StatsHook(sums, layer))
        for kind, sums in stats.sums.items()
        for layer in range(stats.shape.n_layers)
    ]


def batches(
    tokens: Int[Tensor, "n pos"], batch_size: int, desc: str | None = None, progress: bool = False
) -> Iterable[Int[Tensor, "batch pos"]]:
    """Split windows into batches, with a progress bar when asked."""
    chunks = torch.split(tokens, batch_size)
    return tqdm(chunks, desc=desc, leave=False) if progress else chunks


def stream(
    model: TransformerBridge,
    tokens: Int[Tensor, "n pos"],
    *,
    fwd_hooks: list[Hook] = (),
    on_batch: Callable[[Int[Tensor, "batch pos"], Float[Tensor, "batch pos vocab"]], None] | None = None,
    token_mask: Bool[Tensor, "n pos"] | None = None,
    stat_hooks: list[tuple[str, StatsHook]] = (),
    batch_size: int = 8,
    desc: str | None = None,
    progress: bool = False,
) -> None:
    """One forward pass per batch with the given hooks; the single loop both methods run on.

    ``stat_hooks`` read activations, ``fwd_hooks`` edit them (masks), ``on_batch`` sees the logits.
    """
    device = next(model.parameters()).device
    masks = torch.split(token_mask, batch_size) if token_mask is not None else None
    with torch.inference_mode(), model.hooks(fwd_hooks=[*fwd_hooks, *stat_hooks]):
        for i, batch in enumerate(batches(tokens, batch_size, desc, progress)):
            for _, h in stat_hooks:
                h.token_mask = masks[i].to(device) if masks is not None else None
            logits = model(batch.to(device))
            if on_batch is not None:
                on_batch(batch, logits)


def collect_stats(
    model: TransformerBridge,
    tokens: Int[Tensor, "n pos"],
    kinds,
    *,
    fwd_hooks: list[Hook] = (),
    token_mask: Bool[Tensor, "n pos"] | None = None,
    batch_size: int = 8,
    progress: bool = False,
    desc: str = "statistics",
) -> NeuronStats:
    """Statistics of every neuron of ``kinds`` over ``tokens`` (positions in ``token_mask`` only).

    ``fwd_hooks`` (e.g. a pruning mask's hooks) run before the statistics hooks, so statistics
    are those of the edited model.

    Example:
        >>> stats = collect_stats(model, windows, ["mlp"])
        >>> stats.importance("abs")["mlp"].shape  # (n_layers, d_mlp)
    """
    stats = NeuronStats.empty(ModelShape.of(model), kinds)
    hooks = stats_hooks(stats)
    stream(model, tokens, fwd_hooks=fwd_hooks, stat_hooks=hooks, token_mask=token_mask,
           batch_size=batch_size, desc=desc, progress=progress)
    stats.count = int(token_mask.sum()) if token_mask is not None else tokens.numel()
    return stats

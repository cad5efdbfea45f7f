"""Streaming, mergeable per-neuron activation statistics, collected by hooks.

Memory does not grow with the number of tokens: each site keeps five running sums per neuron
(positive count, ``x``, ``|x|``, ``x**2``, ``sqrt|x|``).
Two :class:`NeuronStats` over disjoint tokens merge (``a + b``) into the statistics of their union,
which makes data-parallel collection a reduction (sum) of the fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from circuitcut import distributed
from circuitcut.forward import stream
from circuitcut.hooks import Hook
from circuitcut.sites import IMPORTANCES, Importance, ModelShape, SiteKind, check_kinds, hook_name

_SUMS = ("positive", "sum", "sum_abs", "sum_sq", "sum_sqrt")


@dataclass
class SiteSums:
    """Running sums for one site kind; every field is ``Float64[layer neuron]``."""

    positive: Float[Tensor, "layer neuron"]
    sum: Float[Tensor, "layer neuron"]
    sum_abs: Float[Tensor, "layer neuron"]
    sum_sq: Float[Tensor, "layer neuron"]
    sum_sqrt: Float[Tensor, "layer neuron"]
    """Sum of ``sqrt(|x|)``, for the ``sqrt`` importance."""

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

    def all_reduce(self) -> NeuronStats:
        """Sum every running sum and the count across ranks, in place (nothing to do in one process)."""
        count = torch.tensor([float(self.count)], dtype=torch.float64)
        distributed.all_reduce_([*(t for s in self.sums.values() for t in s.tensors()), count])
        self.count = int(count.item())
        return self

    def importance(self, how: Importance) -> dict[SiteKind, Float[Tensor, "layer neuron"]]:
        """Each neuron's importance to the tokens collected, read from the running sums.

        ``freq``: share of tokens with a positive activation; ``abs``: mean ``|x|``; ``rms``: ``sqrt(mean x**2)``;
        ``std``: population standard deviation; ``sqrt``: mean ``sqrt(|x|)``; ``mean``: mean ``x``, signed.
        ``sqrt`` and ``mean`` are the taker library's (``ActivationCollector.add`` accumulates
        ``data_point.abs().sqrt()`` and ``data_point``; ``ActivationCollector.summary`` returns their means
        as ``sqrt`` and ``mean``, which ``score_indices_by_sqrt`` and ``score_indices_by_mean`` read).
        """
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
            elif how == "sqrt":
                value = s.sum_sqrt / n
            elif how == "mean":
                value = s.sum / n
            else:
                raise ValueError(f"Unknown importance '{how}': choose from {', '.join(IMPORTANCES)}.")
            out[kind] = value.float()
        return out

    def mean(self) -> dict[SiteKind, Float[Tensor, "layer neuron"]]:
        """Each neuron's mean activation (the reference of mean ablation)."""
        return self.importance("mean")


class StatsHook:
    """Adds one layer's activations at the positions in ``token_mask`` to running sums.

    The five sums of a batch are taken in float32 on the activation's device (whatever the model's
    dtype) and added to a float64 running total kept on that device; :meth:`flush` moves the total
    into ``sums`` (on the CPU) once per collection, so a GPU run does no per-batch transfer.
    :func:`~circuitcut.forward.stream` flushes its ``stat_hooks`` when it ends; call it yourself
    when using the hook with ``model.hooks`` directly.
    """

    def __init__(self, sums: SiteSums, layer: int):
        self.sums, self.layer = sums, layer
        self.token_mask: Bool[Tensor, "batch pos"] | None = None
        self._total: Float[Tensor, "5 neuron"] | None = None

    def __call__(self, activation: Float[Tensor, "batch pos *neuron"], hook=None) -> None:
        x = activation.detach().flatten(0, 1).flatten(1)  # (batch pos) neuron
        if self.token_mask is not None:
            x = x[self.token_mask.reshape(-1).to(x.device)]
        x = x.float()  # no copy for float32 models
        magnitude = x.abs()
        batch = torch.stack((x.gt(0).sum(0, dtype=torch.float32), x.sum(0), magnitude.sum(0), x.square().sum(0),
                             magnitude.sqrt().sum(0)))
        if self._total is None:
            self._total = torch.zeros(batch.shape, dtype=_accumulator_dtype(batch.device), device=batch.device)
        self._total += batch

    def flush(self) -> None:
        """Add what was collected since the last flush to ``sums``."""
        if self._total is None:
            return
        total = self._total.to(self.sums.positive.device, torch.float64)
        for acc, value in zip(self.sums.tensors(), total):
            acc[self.layer] += value
        self._total = None


def _accumulator_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


def stats_hooks(stats: NeuronStats) -> list[tuple[str, StatsHook]]:
    return [
        (hook_name(kind, layer), StatsHook(sums, layer))
        for kind, sums in stats.sums.items()
        for layer in range(stats.shape.n_layers)
    ]


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
    across_ranks: bool = False,
) -> NeuronStats:
    """Statistics of every neuron of ``kinds`` over ``tokens`` (positions in ``token_mask`` only).

    ``fwd_hooks`` (e.g. a pruning mask's hooks) run before the statistics hooks, so statistics
    are those of the edited model. Each forward pass stops after the last hooked site.
    With ``across_ranks=True`` (under ``torchrun``, see :mod:`circuitcut.distributed`) each rank
    reads its share of the windows and every rank returns the statistics of all of them.

    Example:
        >>> stats = collect_stats(model, windows, ["mlp"])
        >>> stats.importance("abs")["mlp"].shape  # (n_layers, d_mlp)
    """
    if across_ranks:
        tokens = distributed.shard(tokens)
        token_mask = distributed.shard(token_mask) if token_mask is not None else None
    stats = NeuronStats.empty(ModelShape.of(model), kinds)
    hooks = stats_hooks(stats)
    stream(model, tokens, fwd_hooks=fwd_hooks, stat_hooks=hooks, token_mask=token_mask,
           batch_size=batch_size, desc=desc, progress=progress and distributed.is_main_process())
    return finish_stats(stats, tokens, token_mask, across_ranks)


def finish_stats(
    stats: NeuronStats, tokens: Int[Tensor, "n pos"], token_mask: Bool[Tensor, "n pos"] | None, across_ranks: bool
) -> NeuronStats:
    """Set the token count of statistics filled by hooks over this rank's ``tokens``; with
    ``across_ranks`` sum them across ranks. Every way of collecting statistics ends here."""
    stats.count = int(token_mask.sum()) if token_mask is not None else tokens.numel()
    return stats.all_reduce() if across_ranks else stats

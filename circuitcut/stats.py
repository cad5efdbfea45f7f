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
    """Adds one layer's activations at the positions in ``token_mask`` to running sums.

    The four sums of a batch are taken in float32 on the activation's device (whatever the model's
    dtype) and added to a float64 running total kept on that device; :meth:`flush` moves the total
    into ``sums`` (on the CPU) once per collection, so a GPU run does no per-batch transfer.
    :func:`stream` flushes its ``stat_hooks`` when it ends; call it yourself when using the hook
    with ``model.hooks`` directly.
    """

    def __init__(self, sums: SiteSums, layer: int):
        self.sums, self.layer = sums, layer
        self.token_mask: Bool[Tensor, "batch pos"] | None = None
        self._total: Float[Tensor, "4 neuron"] | None = None

    def __call__(self, activation: Float[Tensor, "batch pos *neuron"], hook=None) -> None:
        x = activation.detach().flatten(0, 1).flatten(1)  # (batch pos) neuron
        if self.token_mask is not None:
            x = x[self.token_mask.reshape(-1).to(x.device)]
        x = x.float()  # no copy for float32 models
        batch = torch.stack((x.gt(0).sum(0, dtype=torch.float32), x.sum(0), x.abs().sum(0), x.square().sum(0)))
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


class _StopForward(Exception):
    """Raised by a hook after the last site anyone reads, when nothing needs the logits."""


def _stop_forward(activation: Tensor, hook=None) -> None:
    raise _StopForward


_ORDER_IN_BLOCK = {"attn.hook_v": 0, "attn.hook_z": 1, "mlp.hook_post": 2}


def _site_position(name) -> tuple[int, int] | None:
    """Where a neuron-site hook runs in the forward pass: (layer, order in the block), else None."""
    if not isinstance(name, str):
        return None
    parts = name.split(".", 2)
    if len(parts) != 3 or parts[0] != "blocks" or not parts[1].isdigit() or parts[2] not in _ORDER_IN_BLOCK:
        return None
    return int(parts[1]), _ORDER_IN_BLOCK[parts[2]]


def last_site(names) -> str | None:
    """The hook among ``names`` that runs last, if all are neuron sites (else None: no early stop)."""
    positions = [(_site_position(n), n) for n in names]
    if not positions or any(p is None for p, _ in positions):
        return None
    return max(positions)[1]


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
    stop_early: bool | None = None,
) -> None:
    """One forward pass per batch with the given hooks; the single loop both methods run on.

    ``stat_hooks`` read activations, ``fwd_hooks`` edit them (masks), ``on_batch`` sees the logits.

    When nothing reads the logits (no ``on_batch``) and every hook sits on a neuron site
    (``blocks.L.mlp.hook_post``, ``attn.hook_v``, ``attn.hook_z``), each forward pass stops right
    after the last hooked site: the layers above it and the unembedding (a fifth of SmolLM2's
    compute, and a ``batch x pos x vocab`` logits tensor) are never run. ``stop_early=False``
    runs the whole model anyway.
    """
    device = next(model.parameters()).device
    masks = torch.split(token_mask, batch_size) if token_mask is not None else None
    hooks = [*fwd_hooks, *stat_hooks]
    if stop_early is None:
        stop_early = on_batch is None
    last = last_site([name for name, _ in hooks]) if stop_early and on_batch is None else None
    if last is not None:
        hooks.append((last, _stop_forward))  # added last: runs after every other hook on that site
    with torch.inference_mode(), model.hooks(fwd_hooks=hooks):
        for i, batch in enumerate(batches(tokens, batch_size, desc, progress)):
            if batch.numel() == 0:
                continue
            for _, h in stat_hooks:
                h.token_mask = masks[i].to(device) if masks is not None else None
            try:
                logits = model(batch.to(device))
            except _StopForward:
                continue
            if on_batch is not None:
                on_batch(batch, logits)
    for _, h in stat_hooks:
        h.flush()


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
    distributed: bool = False,
) -> NeuronStats:
    """Statistics of every neuron of ``kinds`` over ``tokens`` (positions in ``token_mask`` only).

    ``fwd_hooks`` (e.g. a pruning mask's hooks) run before the statistics hooks, so statistics
    are those of the edited model. Each forward pass stops after the last hooked site.
    With ``distributed=True`` (under ``torchrun``, see :mod:`circuitcut.distributed`) each rank
    reads its share of the windows and every rank returns the statistics of all of them.

    Example:
        >>> stats = collect_stats(model, windows, ["mlp"])
        >>> stats.importance("abs")["mlp"].shape  # (n_layers, d_mlp)
    """
    from circuitcut import distributed as dist

    if distributed:
        tokens = dist.shard(tokens)
        token_mask = dist.shard(token_mask) if token_mask is not None else None
    stats = NeuronStats.empty(ModelShape.of(model), kinds)
    hooks = stats_hooks(stats)
    stream(model, tokens, fwd_hooks=fwd_hooks, stat_hooks=hooks, token_mask=token_mask,
           batch_size=batch_size, desc=desc, progress=progress and dist.is_main_process())
    return finish_stats(stats, tokens, token_mask, distributed)


def finish_stats(
    stats: NeuronStats, tokens: Int[Tensor, "n pos"], token_mask: Bool[Tensor, "n pos"] | None, distributed: bool
) -> NeuronStats:
    """Set the token count of statistics filled by hooks over this rank's ``tokens``; under
    ``distributed`` sum them across ranks. Every way of collecting statistics ends here."""
    from circuitcut import distributed as dist

    stats.count = int(token_mask.sum()) if token_mask is not None else tokens.numel()
    return dist.all_reduce_stats(stats) if distributed else stats

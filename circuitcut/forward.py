"""The forward loop both methods run on: batches of windows through the model with hooks, stopping
early after the last hooked site when nothing reads the logits."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.hooks import Hook
from circuitcut.sites import neuron_site


class TokenHook(Protocol):
    """A hook that reads activations at some positions only and keeps what it read until flushed
    (:class:`~circuitcut.stats.StatsHook` is one)."""

    token_mask: Bool[Tensor, "batch pos"] | None

    def __call__(self, activation: Tensor, hook=None) -> None: ...

    def flush(self) -> None: ...


class _StopForward(Exception):
    """Raised by a hook after the last site anyone reads, when nothing needs the logits."""


def _stop_forward(activation: Tensor, hook=None) -> None:
    raise _StopForward


_ORDER_IN_BLOCK = {"attn_v": 0, "attn_z": 1, "mlp": 2}


def _site_position(name) -> tuple[int, int] | None:
    """Where a neuron-site hook runs in the forward pass: (layer, order in the block), else None."""
    try:
        layer, kind = neuron_site(name)
    except ValueError:
        return None
    return layer, _ORDER_IN_BLOCK[kind]


def last_site(names) -> str | None:
    """The hook among ``names`` that runs last, if all are neuron sites (else None: no early stop)."""
    positions = [(_site_position(n), n) for n in names]
    if not positions or any(p is None for p, _ in positions):
        return None
    return max(positions)[1]


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
    stat_hooks: list[tuple[str, TokenHook]] = (),
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

"""What one neuron does: the windows where it fires most, with the tokens around each peak."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from einops import rearrange
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.forward import stream
from circuitcut.hooks import Hook
from circuitcut.sites import SiteKind, hook_name

Ranking = Literal["max", "min", "abs"]
RANKINGS: tuple[Ranking, ...] = ("max", "min", "abs")


@dataclass
class NeuronContexts:
    """The windows where one neuron fires most: tokens around each peak and their activations."""

    kind: SiteKind
    layer: int
    neuron: int
    tokens: list[list[str]]
    """Per context, the token strings around the peak (``""`` where the window ends)."""
    activations: Float[Tensor, "context offset"]
    """The neuron's activation at each of those tokens (NaN where the window ends)."""
    offsets: list[int]
    """Position of each column relative to the peak token."""
    peaks: list[tuple[int, int, float]]
    """Per context: (window, position, peak activation)."""
    rank_by: Ranking = "max"
    """How the peaks were chosen: highest activation, lowest, or largest magnitude."""


def _readable(text: str) -> str:
    """Whitespace made visible, so a token that is a space or a newline still shows."""
    return text.replace("\n", "↵").replace("\t", "⇥").replace(" ", "·")


def top_activating_contexts(
    model: TransformerBridge, tokens: Int[Tensor, "n pos"], layer: int, neuron: int, *, kind: SiteKind = "mlp",
    **options,
) -> NeuronContexts:
    """One pass over ``tokens`` recording a neuron; the ``k`` windows with the highest peaks (``options``: those of
    :func:`many_contexts`, ``k``, ``before``, ``after``, ``fwd_hooks``, ``batch_size``, ``rank_by``)."""
    return many_contexts(model, tokens, {(kind, layer): [neuron]}, **options)[kind, layer, neuron]


def many_contexts(
    model: TransformerBridge,
    tokens: Int[Tensor, "n pos"],
    neurons: Mapping[tuple[SiteKind, int], Sequence[int]],
    *,
    k: int = 8,
    before: int = 10,
    after: int = 3,
    fwd_hooks: Sequence[Hook] = (),
    batch_size: int = 8,
    rank_by: Ranking = "max",
) -> dict[tuple[SiteKind, int, int], NeuronContexts]:
    """The ``k`` windows with the highest peaks of each of many neurons, keyed ``(kind, layer, neuron)``, in one pass
    over ``tokens``: ``neurons`` names each site's neurons (only theirs are kept, ``n x pos`` values each).

    ``rank_by="abs"`` ranks by magnitude, matching the abs/rms/std importances: a gated feed-forward
    neuron can matter mostly through negative values, which ``"max"`` would never show. ``before`` and ``after``:
    tokens kept around each peak.

    One context per window, so that a neuron firing on a long run of tokens does not fill the list
    with near-copies of one passage. ``fwd_hooks`` (e.g. a pruning mask) run first.
    """
    if rank_by not in RANKINGS:
        raise ValueError(f"Unknown rank_by '{rank_by}': choose from {', '.join(RANKINGS)}.")
    recorded: dict[tuple[SiteKind, int], list[Tensor]] = {site: [] for site in neurons}

    def recorder(site: tuple[SiteKind, int]):
        index = torch.tensor(list(neurons[site]), dtype=torch.long)

        def record(activation: Float[Tensor, "batch pos *neuron"], hook=None) -> None:
            flat = rearrange(activation, "b p ... -> b p (...)")
            recorded[site].append(flat[..., index.to(flat.device)].float().cpu())

        return record

    hooks = [(hook_name(kind, layer), recorder((kind, layer))) for kind, layer in neurons]
    stream(model, tokens, fwd_hooks=[*fwd_hooks, *hooks], batch_size=batch_size)
    out = {}
    for (kind, layer), chosen in neurons.items():
        acts = torch.cat(recorded[kind, layer])
        for i, neuron in enumerate(chosen):
            out[kind, layer, neuron] = _contexts(model, tokens, acts[..., i], (kind, layer, neuron), k, before, after,
                                                 rank_by)
    return out


def _contexts(model: TransformerBridge, tokens: Int[Tensor, "n pos"], acts: Float[Tensor, "n pos"],
              unit: tuple[SiteKind, int, int], k: int, before: int, after: int, rank_by: Ranking) -> NeuronContexts:
    """A neuron's ``k`` windows with the highest peaks (one per window), from its activations on ``tokens``."""
    key = {"max": acts, "min": -acts, "abs": acts.abs()}[rank_by]
    strength, position = key.max(dim=1)
    windows = strength.topk(min(k, len(strength))).indices.tolist()
    offsets = list(range(-before, after + 1))
    rows, values, peaks = [], torch.full((len(windows), len(offsets)), float("nan")), []
    for r, w in enumerate(windows):
        p = int(position[w])
        row = []
        for c, off in enumerate(offsets):
            q = p + off
            inside = 0 <= q < tokens.shape[1]
            row.append(_readable(model.tokenizer.decode([int(tokens[w, q])])) if inside else "")
            if inside:
                values[r, c] = acts[w, q]
        rows.append(row)
        peaks.append((w, p, float(acts[w, p])))
    return NeuronContexts(*unit, rows, values, offsets, peaks, rank_by)

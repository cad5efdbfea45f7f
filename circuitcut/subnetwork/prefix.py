"""The frozen prefix: the blocks below the first masked layer, run once per token sequence instead of every step.

A subnetwork run masks layers ``k`` and above only, and every forward it makes (training steps,
validations, the final evaluation, each random-mask baseline, the original model's reference
distributions) sees the same fixed prompts and text windows. Blocks ``0 .. k-1`` are the original
model whatever the mask, so the residual stream entering block ``k`` is the same every time:
:class:`FrozenPrefix` computes it once per sequence and, inside :meth:`FrozenPrefix.active`, every
``model(tokens)`` whose rows it holds starts at block ``k`` from the stored residual (rows it does
not hold run the whole model, so results never depend on what was cached).

Memory: one ``d_model`` vector per token in the model's dtype. A default run's sequences are about
28,000 tokens (the 8,192-token ControlLM training pool, 2,048 validation and 8,192 evaluation tokens,
and about 850 fact rows padded to their batch's width of about 12), so SmolLM2's 576 float32 values make
28,000 x 576 x 4 B = 62 MB, beside a model of 540 MB. Above ``budget_mb`` (or with ``k = 0``, where
there is nothing to skip) the prefix is left off and every forward runs the whole model.

Inside :meth:`active`, hooks on blocks below ``k`` do not run for cached rows: only the subnetwork
trainer, whose hooks and parametrized weights all sit at ``k`` and above, uses it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

Key = tuple[bytes, int]


def _unpadded(tokens: list[int]) -> int:
    """The length of a row without its trailing run of one repeated token (its padding)."""
    end = len(tokens)
    while end > 0 and tokens[end - 1] == tokens[-1]:
        end -= 1
    return end


def _key(tokens: list[int]) -> Key:
    """A row's unpadded part and its padding token. Two rows with one key differ only in how many
    padding tokens end them, so the residual of the longer, cut to the shorter's length, is the
    shorter's (causal model)."""
    return bytes(str(tokens[: _unpadded(tokens)]), "ascii"), tokens[-1]


def _keys(row: Int[Tensor, " pos"]) -> list[tuple[Key, int]]:
    """The keys a held row answers, each with the length of the residual it may serve: its own (the
    whole row), and that of its unpadded part less its last token (a fact sub-batch trimmed to its
    longest row feeds that row so), which serves no longer row than that part."""
    tokens = row.tolist()
    end = _unpadded(tokens)
    own = (_key(tokens), len(tokens))
    return [own, (_key(tokens[: end - 1]), end - 1)] if end > 1 else [own]


def _passthrough(hidden_states: Tensor, *args, **kwargs) -> Tensor:
    """A block that returns its input: blocks below the start run nothing."""
    return hidden_states


class FrozenPrefix:
    """Residual streams entering block ``layer`` for every sequence added; :meth:`active` serves them."""

    def __init__(self, model: TransformerBridge, layer: int, *, budget_mb: float = 1024.0):
        self.model, self.layer, self.budget_mb = model, layer, budget_mb
        self.rows: dict[Key, Float[Tensor, "pos d_model"]] = {}
        self.enabled = layer > 0 and budget_mb > 0
        self.hits = self.misses = 0
        """Rows served from the cache so far, and forwards that ran the whole model inside :meth:`active`."""

    @classmethod
    def of(cls, model: TransformerBridge, layer: int, sequences: list[Int[Tensor, "n pos"]], *,
           budget_mb: float = 1024.0) -> FrozenPrefix:
        """The prefix below ``layer`` holding every row of ``sequences``; left off when they would not fit the budget."""
        prefix = cls(model, layer, budget_mb=budget_mb)
        prefix.enabled = prefix.enabled and prefix.fits(sequences)
        for tokens in sequences:
            prefix.add(tokens)
        return prefix

    @property
    def megabytes(self) -> float:
        held = {r.untyped_storage().data_ptr(): r.untyped_storage().nbytes() for r in self.rows.values()}  # up to two keys a row
        return sum(held.values()) / 2**20

    def fits(self, sequences: Iterable[Int[Tensor, "n pos"]]) -> bool:
        """Whether the residuals of these token sequences fit ``budget_mb`` (counted before computing them)."""
        element = next(self.model.parameters()).element_size()
        tokens = sum(t.numel() for t in sequences)
        return tokens * self.model.cfg.d_model * element / 2**20 <= self.budget_mb

    @torch.no_grad()
    def add(self, tokens: Int[Tensor, "n pos"], batch_size: int = 16) -> None:
        """Compute and keep the residual entering block ``layer`` for every row not held yet.

        ``no_grad`` rather than inference mode: the stored tensors enter the training graph later.
        """
        if not self.enabled:
            return
        device = next(self.model.parameters()).device
        todo = {}
        for row in tokens:
            keys = _keys(row)
            held = self.rows.get(keys[0][0])
            if held is None or held.shape[0] < row.shape[0]:
                todo[tuple(keys)] = row
        chunks = list(todo.items())
        for start in range(0, len(chunks), batch_size):
            chunk = chunks[start : start + batch_size]  # rows of one tensor: one length, one batch
            residuals = self.model(torch.stack([row for _, row in chunk]).to(device), stop_at_layer=self.layer)
            for (keys, _), r in zip(chunk, residuals):
                for key, length in keys:
                    self.rows[key] = r[:length]

    def lookup(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"] | None:
        """The stored residuals of these rows, or ``None`` when any row is not held."""
        out = []
        for row in tokens:
            held = self.rows.get(_key(row.tolist()))
            if held is None or held.shape[0] < row.shape[0]:
                return None
            out.append(held[: row.shape[0]])
        return torch.stack(out)

    @contextmanager
    def active(self) -> Iterator[None]:
        """Inside, ``model(tokens)`` starts at block ``layer`` for rows held here (same logits, less work)."""
        if not self.enabled:
            yield
            return
        model = self.model
        outer = model.__dict__.get("forward")  # another prefix's, when one is active around this one
        full = outer or type(model).forward.__get__(model)

        def forward(input, *args, **kwargs):
            residual = None
            if not args and not kwargs and isinstance(input, Tensor) and not input.is_floating_point():
                residual = self.lookup(input)
            if residual is None:
                self.misses += 1
                return full(input, *args, **kwargs)
            self.hits += len(residual)
            return self._from_layer(full, residual)

        model.__dict__["forward"] = forward
        try:
            yield
        finally:
            if outer is None:
                model.__dict__.pop("forward")
            else:
                model.__dict__["forward"] = outer

    def _from_layer(self, full, residual: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos vocab"]:
        # The bridge's start_at_layer feeds the residual in as input embeddings and swaps it in at
        # block ``layer``, but still runs the blocks below; they are made pass-throughs meanwhile.
        below = list(self.model.blocks)[: self.layer]
        for block in below:
            block.__dict__["forward"] = _passthrough  # the bridge would forward a setattr to the HF layer
        try:
            return full(residual, start_at_layer=self.layer)
        finally:
            for block in below:
                block.__dict__.pop("forward")

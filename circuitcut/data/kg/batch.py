"""Encoding: prompts and their tails as right-padded token batches, ready for a loss or a score."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from circuitcut.data.kg.triplets import KGError


@dataclass
class TailScores:
    """How a model scores the tails of a :class:`KGBatch` (one value per row)."""

    rank: Int[Tensor, " batch"]  # 1 = the model's top-1 next token is the first tail token
    logprob: Float[Tensor, " batch"]  # log p(first tail token | prompt)
    tail_logprob: Float[Tensor, " batch"]  # mean log p over all tail tokens

    @property
    def perplexity(self) -> Float[Tensor, " batch"]:
        """Tail perplexity, ``exp(-mean log p)`` over the tail's tokens."""
        return torch.exp(-self.tail_logprob)

    def in_top_k(self, k: int = 10) -> Bool[Tensor, " batch"]:
        return self.rank <= k


@dataclass
class KGBatch:
    """Prompts followed by their tails, right-padded.

    ``tokens[i, : predict_pos[i] + 1]`` is row i's prompt; the logits at ``predict_pos[i]``
    predict ``tail_token[i]`` (the first tail token); for multi-token tails the logits at
    ``predict_pos[i] + j`` predict ``tail_tokens[i, j]`` where ``tail_mask[i, j]``. Padding comes
    after each row's tail, so a causal model needs no attention mask for these positions (and
    ``tokens[:, :-1]`` suffices as input: the last token of a row predicts nothing needed).
    ``item_index[i]`` is the index of the row's item in the list given to :func:`encode`.
    """

    tokens: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    predict_pos: Int[Tensor, " batch"]
    tail_token: Int[Tensor, " batch"]
    tail_tokens: Int[Tensor, "batch tail"]
    tail_mask: Bool[Tensor, "batch tail"]
    item_index: Int[Tensor, " batch"]
    prompts: list[str]
    continuations: list[str]
    templates: list[str]

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def to(self, device: str | torch.device) -> KGBatch:
        moved = {k: v.to(device) for k, v in self.__dict__.items() if isinstance(v, Tensor)}
        return replace(self, **moved)

    def __getitem__(self, index: slice | Sequence[int] | Tensor) -> KGBatch:
        """Rows of the batch (a slice or indices), with padding trimmed to the longest row kept."""
        if isinstance(index, slice):
            rows = list(range(len(self)))[index]
        else:
            rows = [int(i) for i in index]
        idx = torch.tensor(rows, dtype=torch.long, device=self.tokens.device)
        lengths = self.attention_mask[idx].sum(-1)
        width = int(lengths.max()) if len(rows) else 0
        tail_width = int(self.tail_mask[idx].sum(-1).max()) if len(rows) else 0
        return KGBatch(
            tokens=self.tokens[idx, :width],
            attention_mask=self.attention_mask[idx, :width],
            predict_pos=self.predict_pos[idx],
            tail_token=self.tail_token[idx],
            tail_tokens=self.tail_tokens[idx, :tail_width],
            tail_mask=self.tail_mask[idx, :tail_width],
            item_index=self.item_index[idx],
            prompts=[self.prompts[i] for i in rows],
            continuations=[self.continuations[i] for i in rows],
            templates=[self.templates[i] for i in rows],
        )

    def batches(self, batch_size: int) -> Iterator[KGBatch]:
        """Consecutive sub-batches of at most ``batch_size`` rows."""
        for start in range(0, len(self), batch_size):
            yield self[start : start + batch_size]

    def tail_positions(self, width: int | None = None) -> Int[Tensor, "batch tail"]:
        """The positions whose logits predict each row's tail tokens: ``predict_pos + j`` for the first ``width``
        tail tokens (default: all), kept inside the input (``tokens[:, :-1]``) where ``tail_mask`` is False."""
        width = self.tail_tokens.shape[1] if width is None else width
        pos = self.predict_pos[:, None] + torch.arange(width, device=self.predict_pos.device)[None, :]
        return pos.clamp(max=max(self.tokens.shape[1] - 2, 0))

    def predict_logits(self, logits: Float[Tensor, "batch pos vocab"], at_tail: bool = False) -> Float[Tensor, "batch vocab"]:
        """The logits at each row's ``predict_pos`` (the distribution over the first tail token).

        ``at_tail``: ``logits`` hold only the tail positions (:func:`~circuitcut.data.kg.known.tail_logits`),
        not every position of ``tokens``; the same holds for :meth:`tail_logprobs`, :meth:`tail_nll` and :meth:`score`."""
        if at_tail:
            return logits[:, 0]
        rows = torch.arange(len(self), device=logits.device)
        return logits[rows, self.predict_pos.to(logits.device)]

    def tail_logprobs(self, logits: Float[Tensor, "batch pos vocab"], at_tail: bool = False) -> Float[Tensor, "batch tail"]:
        """Log-probability of every tail token (0 where ``tail_mask`` is False). Differentiable."""
        device = logits.device
        if at_tail:
            picked = logits[:, : self.tail_tokens.shape[1]]
        else:
            rows = torch.arange(len(self), device=device)[:, None]
            picked = logits[rows, self.tail_positions().to(device).clamp(max=logits.shape[1] - 1)]
        lp = picked.float().log_softmax(-1).gather(-1, self.tail_tokens.to(device)[..., None]).squeeze(-1)
        return lp * self.tail_mask.to(device)

    def tail_nll(self, logits: Float[Tensor, "batch pos vocab"], at_tail: bool = False) -> Float[Tensor, " batch"]:
        """Mean negative log-likelihood of each row's tail (all its tokens). Differentiable."""
        mask = self.tail_mask.to(logits.device)
        return -(self.tail_logprobs(logits, at_tail).sum(-1) / mask.sum(-1).clamp(min=1))

    @torch.no_grad()
    def score(self, logits: Float[Tensor, "batch pos vocab"], at_tail: bool = False) -> TailScores:
        """Rank and log-probabilities of the tails under these logits."""
        first = self.predict_logits(logits, at_tail).float()
        target = self.tail_token.to(first.device)
        target_logit = first.gather(-1, target[:, None])
        rank = (first > target_logit).sum(-1) + 1
        logprob = first.log_softmax(-1).gather(-1, target[:, None]).squeeze(-1)
        return TailScores(rank=rank.cpu(), logprob=logprob.cpu(),
                          tail_logprob=(-self.tail_nll(logits, at_tail)).cpu())


def _tokenizer_of(obj):
    """Accept a tokenizer or a model carrying one (``model.tokenizer``)."""
    if hasattr(obj, "convert_tokens_to_ids"):
        return obj
    tokenizer = getattr(obj, "tokenizer", None)
    if tokenizer is None:
        raise KGError("Pass a Hugging Face tokenizer or a model with a .tokenizer attribute.")
    return tokenizer


def tokenize_pairs(
    tokenizer, prompts: Sequence[str], continuations: Sequence[str], prepend_bos: bool | None = None
) -> list[tuple[list[int], list[int]]]:
    """Token ids of each prompt (with the tokenizer's special tokens unless ``prepend_bos=False``;
    ``True`` forces a BOS) and of each continuation (no special tokens)."""
    tokenizer = _tokenizer_of(tokenizer)
    if not prompts:
        return []
    p_ids = tokenizer(list(prompts), add_special_tokens=prepend_bos is not False)["input_ids"]
    c_ids = tokenizer(list(continuations), add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    out = []
    for p, c, text in zip(p_ids, c_ids, continuations):
        p = list(p)
        if prepend_bos and bos is not None and (not p or p[0] != bos):
            p = [bos] + p
        if tokenizer.eos_token_id is not None and p and p[-1] == tokenizer.eos_token_id and len(p) > 1:
            p = p[:-1]  # tokenizers that append EOS to every text
        if not c:
            raise KGError(f"Continuation {text!r} encodes to no tokens.")
        out.append((p, list(c)))
    return out


def collate(
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    pad_id: int = 0,
    item_index: Sequence[int] | None = None,
    prompts: Sequence[str] = (),
    continuations: Sequence[str] = (),
    templates: Sequence[str] = (),
) -> KGBatch:
    """Right-pad ``(prompt ids, tail ids)`` pairs into a :class:`KGBatch`."""
    n = len(pairs)
    width = max((len(p) + len(t) for p, t in pairs), default=0)
    tail_width = max((len(t) for _, t in pairs), default=0)
    tokens = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    tails = torch.full((n, tail_width), pad_id, dtype=torch.long)
    tail_mask = torch.zeros((n, tail_width), dtype=torch.bool)
    predict = torch.zeros(n, dtype=torch.long)
    for i, (p, t) in enumerate(pairs):
        seq = list(p) + list(t)
        tokens[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
        tails[i, : len(t)] = torch.tensor(list(t))
        tail_mask[i, : len(t)] = True
        predict[i] = len(p) - 1
    return KGBatch(
        tokens=tokens,
        attention_mask=mask,
        predict_pos=predict,
        tail_token=tails[:, 0].clone() if n else torch.zeros(0, dtype=torch.long),
        tail_tokens=tails,
        tail_mask=tail_mask,
        item_index=torch.tensor(list(item_index) if item_index is not None else range(n), dtype=torch.long),
        prompts=list(prompts) or [""] * n,
        continuations=list(continuations) or [""] * n,
        templates=list(templates) or [""] * n,
    )


def _pad_id(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0

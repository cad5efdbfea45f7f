"""What relearning trains on and measures: token windows (pruning runs) or knowledge-graph facts (subnetworks).

Both kinds offer the same four things, so the fine-tuning loop never asks which it holds: a size,
a training loss on some rows, the tokens those rows cost, metrics of the whole set, and a check
that a fine-tuning set shares nothing with an evaluation set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.data.kg import TEMPLATE_BY_NAME, KGBatch, score_pairs, tail_logits
from circuitcut.evaluate import evaluate_tokens, percent

SPAN = 32
"""Token windows overlap when they share a span of this many tokens: long enough that licence
headers and common import lines in different documents do not count, short enough that any copied
passage does."""


class OverlapError(ValueError):
    """A fine-tuning set shares examples with an evaluation set."""


@dataclass
class Windows:
    """Token windows: next-token loss to train, top-1/top-10 accuracy and perplexity to measure."""

    tokens: Int[Tensor, "n pos"]
    batch_size: int = 8

    def __len__(self) -> int:
        return len(self.tokens)

    def loss(self, model: TransformerBridge, rows: Int[Tensor, " batch"]) -> Tensor:
        batch = self.tokens[rows].to(next(model.parameters()).device)
        logits = model(batch[:, :-1])
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten())

    def n_tokens(self, rows: Int[Tensor, " batch"]) -> int:
        return self.tokens[rows].numel()

    def evaluate(self, model: TransformerBridge) -> dict:
        m = evaluate_tokens(model, self.tokens, batch_size=self.batch_size)
        return {"top1": m.top1, "top10": m.top10, "loss": m.loss, "ppl": m.perplexity, "n": m.n_tokens}

    def disjoint_from(self, *others: Windows) -> Windows:
        """The windows of ``self`` that share no :data:`SPAN`-token span with any of ``others``."""
        shared = set(self._sharing(*others))
        return Windows(self.tokens[[i for i in range(len(self)) if i not in shared]], self.batch_size)

    def check_disjoint(self, other: Windows, names: tuple[str, str]) -> None:
        """Refuse when any window of ``self`` shares a :data:`SPAN`-token span with ``other``."""
        shared = self._sharing(other)
        if shared:
            raise OverlapError(
                f"{len(shared)} of {len(self)} {names[0]} windows share a {SPAN}-token span with the {names[1]} "
                f"windows: fine-tuning on them would teach the test. Fine-tune on text from the other split "
                f"(the run's statistics split) or another corpus."
            )


    def _sharing(self, *others: Windows) -> list[int]:
        """Indices of the windows of ``self`` that share a :data:`SPAN`-token span with one of ``others``."""
        seen = set().union(*(_spans(o.tokens) for o in others))
        return [i for i, row in enumerate(self.tokens) if _spans(row[None]) & seen]


def _spans(tokens: Int[Tensor, "n pos"]) -> set[tuple[int, ...]]:
    width = min(SPAN, tokens.shape[1])
    return {tuple(s) for row in tokens.tolist() for s in zip(*(row[i:] for i in range(width)))}


@dataclass
class Facts:
    """Knowledge-graph facts: tail NLL to train; top-1/top-10 of the first tail token and tail PPL to measure."""

    batch: KGBatch
    batch_size: int = 64

    def __len__(self) -> int:
        return len(self.batch)

    def loss(self, model: TransformerBridge, rows: Int[Tensor, " batch"]) -> Tensor:
        sub = self.batch[rows].to(next(model.parameters()).device)
        return sub.tail_nll(tail_logits(model, sub), at_tail=True).mean()

    def n_tokens(self, rows: Int[Tensor, " batch"]) -> int:
        return int(self.batch.attention_mask[rows].sum())

    @torch.inference_mode()
    def evaluate(self, model: TransformerBridge) -> dict:
        scores = score_pairs(model, self.batch, self.batch_size)
        return {
            "top1": percent(scores.rank <= 1),
            "top10": percent(scores.rank <= 10),
            "ppl_tail": math.exp(-scores.tail_logprob.mean().item()),
            "median_rank": scores.rank.float().median().item(),
            "n": len(self.batch),
        }

    def check_disjoint(self, other: Facts, names: tuple[str, str]) -> None:
        """Refuse when a fact of ``self`` has the same subject as one of ``other``, whatever the wording.

        Fine-tuning "a dog is a mammal" would teach the test "a dog is a kind of animal" about the same
        subject; the subject is the prompt with its relation template's words removed.
        """
        shared = sorted(subjects(self.batch) & subjects(other.batch))
        if shared:
            raise OverlapError(
                f"{len(shared)} {names[0]} fact(s) have the same subject as {names[1]} facts "
                f"(e.g. {shared[0]!r}): fine-tuning on them would teach the test. Use facts about other subjects."
            )


def subjects(batch: KGBatch) -> set[str]:
    """The subject of each fact, lower case: its prompt without the words of its relation template."""
    out = set()
    for prompt, template in zip(batch.prompts, batch.templates):
        words = set(TEMPLATE_BY_NAME[template].text.replace("{tail}", "").split()) | {"a", "an", "A", "An", "The"}
        out.add(" ".join(w for w in prompt.split() if w not in words).lower())
    return out - {""}  # a subject made only of template words says nothing

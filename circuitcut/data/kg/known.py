"""Knowledge filtering: score triplets under every template, keep those the model knows, and encode
them under their chosen template.

:func:`known_triplets` keeps the triplets whose first tail token the model ranks in its top-k under
the training template with the lowest tail perplexity (that template is the triplet's *chosen* one,
as in the paper).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from circuitcut.data.kg.batch import KGBatch, TailScores, _pad_id, _tokenizer_of, collate, tokenize_pairs
from circuitcut.data.kg.triplets import (
    TEMPLATE_BY_NAME, KGError, Template, Triplet, get_template, templates_for, verbalize,
)


@dataclass(frozen=True)
class TemplateScore:
    template: str
    rank: int  # rank of the first tail token, 1 = top-1
    logprob: float  # log p(first tail token)
    tail_logprob: float  # mean log p over the tail's tokens

    @property
    def perplexity(self) -> float:
        return math.exp(-self.tail_logprob)

    @property
    def role(self) -> str:
        return TEMPLATE_BY_NAME[self.template].role

    @property
    def heldout(self) -> bool:
        return self.role == "heldout"


@dataclass(frozen=True)
class KnownTriplet:
    """A triplet with the model's scores under every template scored, and the chosen template:
    the training template with the lowest tail perplexity. ``known``: its first tail token is in
    the model's top-k (the ``top_k`` given to :func:`known_triplets`) under that template."""

    triplet: Triplet
    template: str
    rank: int
    logprob: float
    tail_logprob: float
    known: bool
    scores: tuple[TemplateScore, ...] = ()

    @property
    def perplexity(self) -> float:
        return math.exp(-self.tail_logprob)

    @property
    def prompt(self) -> str:
        return verbalize(self.triplet, self.template)[0]

    @property
    def continuation(self) -> str:
        return verbalize(self.triplet, self.template)[1]

    @property
    def heldout_scores(self) -> tuple[TemplateScore, ...]:
        return tuple(s for s in self.scores if s.heldout)

    def __str__(self) -> str:
        return f"{self.prompt}|{self.continuation} (rank {self.rank}, ppl {self.perplexity:.1f})"


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError, TypeError):
        return torch.device("cpu")


def tail_logits(model, batch: KGBatch, width: int | None = None) -> Float[Tensor, "batch tail vocab"]:
    """Logits at the positions that predict each row's tail tokens only: ``[:, j]`` predicts ``tail_tokens[:, j]``
    (the first ``width`` of them; default all). Score them with ``at_tail=True`` (:meth:`KGBatch.score`).

    Batches are right-padded; with causal attention the padding after a row's tail cannot change the
    predictions before it, and the last column predicts nothing needed. Only the predicting positions enter
    the unembedding (a hook on its input): a fact prompt is about 12 tokens and a tail one to three, and
    SmolLM2's 49,152 x 576 unembedding costs as much per position as 8 of its 30 blocks. Differentiable.
    """
    device = _model_device(model)
    rows = torch.arange(len(batch), device=device)[:, None]
    pos = batch.tail_positions(width).to(device)

    def predicting(residual: Float[Tensor, "batch pos d_model"], hook=None) -> Float[Tensor, "batch tail d_model"]:
        return residual[rows, pos]

    with model.hooks(fwd_hooks=[("unembed.hook_in", predicting)]):
        return model(batch.tokens[:, :-1].to(device))


@torch.inference_mode()
def score_pairs(model, batch: KGBatch, batch_size: int = 64) -> TailScores:
    """Run ``model`` on a :class:`KGBatch` in sub-batches (rows sorted by length to limit padding); the
    unembedding sees the tail positions only (:func:`tail_logits`)."""
    device = _model_device(model)
    order = sorted(range(len(batch)), key=lambda i: int(batch.attention_mask[i].sum()))
    rank = torch.zeros(len(batch), dtype=torch.long)
    logprob = torch.zeros(len(batch))
    tail_lp = torch.zeros(len(batch))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        sub = batch[rows].to(device)
        scores = sub.score(tail_logits(model, sub), at_tail=True)
        idx = torch.tensor(rows)
        rank[idx], logprob[idx], tail_lp[idx] = scores.rank, scores.logprob, scores.tail_logprob
    return TailScores(rank=rank, logprob=logprob, tail_logprob=tail_lp)


def score_triplets(
    model,
    triplets: Sequence[Triplet],
    *,
    top_k: int = 10,
    batch_size: int = 64,
    heldout: bool = False,
    prepend_bos: bool | None = None,
) -> list[KnownTriplet]:
    """Score every triplet under every training template of its relation (and its validation and
    held-out ones with ``heldout=True``), one forward pass per distinct sentence, and pick each
    triplet's template among the training ones.

    Returns one :class:`KnownTriplet` per input triplet (``known`` says whether it passes top-k).
    """
    if top_k < 1:
        raise KGError(f"top_k must be >= 1, got {top_k}.")
    tokenizer = _tokenizer_of(model)
    keys: dict[tuple[str, str], int] = {}
    per_triplet: list[list[tuple[str, int]]] = []
    for triplet in triplets:
        rows = []
        for template in templates_for(triplet.relation, None if heldout else "train"):
            key = verbalize(triplet, template)
            rows.append((template.name, keys.setdefault(key, len(keys))))
        per_triplet.append(rows)
    texts = list(keys)
    pairs = tokenize_pairs(tokenizer, [p for p, _ in texts], [c for _, c in texts], prepend_bos)
    batch = collate(pairs, pad_id=_pad_id(tokenizer))
    scores = score_pairs(model, batch, batch_size)
    out = []
    for triplet, rows in zip(triplets, per_triplet):
        ts = tuple(
            TemplateScore(name, int(scores.rank[r]), float(scores.logprob[r]), float(scores.tail_logprob[r]))
            for name, r in rows
        )
        best = max((s for s in ts if s.role == "train"), key=lambda s: s.tail_logprob)
        out.append(
            KnownTriplet(triplet, best.template, best.rank, best.logprob, best.tail_logprob, best.rank <= top_k, ts)
        )
    return out


def known_triplets(
    model,
    triplets: Sequence[Triplet],
    *,
    top_k: int = 10,
    batch_size: int = 64,
    heldout: bool = False,
    prepend_bos: bool | None = None,
) -> list[KnownTriplet]:
    """The triplets ``model`` knows: first tail token in its top ``top_k`` (default 10, as in the
    definition of docs/metrics.md) under the training template with the lowest tail perplexity.

    Args:
        model: a TransformerBridge (``model(tokens)`` gives logits; ``model.tokenizer``).
        triplets: candidates, e.g. from :func:`load_wordnet`.
        batch_size: rows per forward pass (right-padded, rows of similar length together).
        heldout: also score the validation and held-out templates (kept in ``KnownTriplet.scores``); off by
            default since held-out scores matter for the few target triplets only (score those
            later with ``encode(..., template="heldout")``) and each template costs a forward pass.
        prepend_bos: ``None`` uses the tokenizer's default special tokens.
    """
    return [k for k in score_triplets(
        model, triplets, top_k=top_k, batch_size=batch_size, heldout=heldout, prepend_bos=prepend_bos
    ) if k.known]


def encode(
    tokenizer,
    items: Sequence[KnownTriplet | Triplet],
    template: str = "chosen",
    prepend_bos: bool | None = None,
) -> KGBatch:
    """Tokenize items into a padded :class:`KGBatch`.

    Args:
        tokenizer: a Hugging Face tokenizer, or a model with ``.tokenizer``.
        items: :class:`KnownTriplet` (or bare :class:`Triplet` with a template other than ``"chosen"``).
        template: ``"chosen"`` (each item's chosen training template, one row per item), a role
            (``"train"``, ``"validation"``, ``"heldout"``: one row per template of the item's relation
            with that role; a relation may have none), ``"all"``, or a template name. ``item_index``
            maps rows back to ``items``.
    """
    tokenizer = _tokenizer_of(tokenizer)
    rows: list[tuple[int, Triplet, Template]] = []
    for i, item in enumerate(items):
        triplet = item.triplet if isinstance(item, KnownTriplet) else item
        if template == "chosen":
            if not isinstance(item, KnownTriplet):
                raise KGError(
                    f"{triplet} has no chosen template (it was not scored); run known_triplets() first "
                    "or pass template='train', 'validation', 'heldout', 'all' or a template name."
                )
            chosen = [get_template(item.template)]
        elif template in ("train", "validation", "heldout", "all"):
            chosen = list(templates_for(triplet.relation, None if template == "all" else template))
        else:
            chosen = [get_template(template)]
        rows += [(i, triplet, t) for t in chosen]
    texts = [verbalize(triplet, t) for _, triplet, t in rows]
    pairs = tokenize_pairs(tokenizer, [p for p, _ in texts], [c for _, c in texts], prepend_bos)
    return collate(
        pairs,
        pad_id=_pad_id(tokenizer),
        item_index=[i for i, _, _ in rows],
        prompts=[p for p, _ in texts],
        continuations=[c for _, c in texts],
        templates=[t.name for _, _, t in rows],
    )

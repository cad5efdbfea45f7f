"""Knowledge-graph triplets for knowledge-critical subnetworks (Bayazit et al., arXiv 2310.03084).

The pipeline, in the order a user calls it::

    from circuitcut.data import kg
    triplets = kg.load_wordnet(relations=("IsA",))           # shipped WordNet 3.0 file, offline
    known = kg.known_triplets(model, triplets, top_k=10)     # what the model expresses
    target = kg.select_target("isa:animal", known, n=20)     # TargetKG: one coherent family
    control = kg.select_control(known, exclude=target, n=200, seed=0)   # ControlKG, disjoint
    batch = target.encode(model.tokenizer)                   # KGBatch: tokens, predict_pos, tail_token
    logits = model(batch.tokens)
    scores = batch.score(logits)                             # rank / log-prob of the tail

* A :class:`Triplet` is ``(head, relation, tail)`` in plain words: ``("dog", "IsA", "canine")``.
  Relation directions: ``(wheel, PartOf, car)``, ``(player, MemberOf, team)``,
  ``(table, MadeOf, wood)``.
* :data:`TEMPLATES` verbalize each relation several ways; the text before the tail is the prompt,
  the tail with a leading space is the continuation. Held-out templates (``heldout=True``) are
  paraphrases never used for training, kept for evaluation.
* :func:`known_triplets` keeps the triplets whose first tail token the model ranks in its top-k
  under the training template with the lowest tail perplexity (that template is the triplet's
  *chosen* one, as in the paper).
* Target specs: ``"isa:animal"`` (IsA triplets whose tail lies under the synset, itself included),
  ``"partof:vehicle"`` (same for any relation), ``"relation:PartOf"`` (a whole relation),
  ``"tail:animal"`` (an exact tail word). Synsets: a lemma (first sense), ``"building.n.01"``, or
  an offset ``"02913152"``.

Every user error raises :class:`KGError` (a ``ValueError``) naming the problem and the fix.
"""

from __future__ import annotations

import difflib
import gzip
import json
import math
import random
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from circuitcut.data.wordnet import WordNetGraph, load_graph


__all__ = [
    "KGError", "Triplet", "Template", "TEMPLATES", "RELATIONS", "WORDNET_RELATIONS", "templates_for", "get_template",
    "article", "verbalize", "render", "load_wordnet", "load_conceptnet", "TailScores", "KGBatch", "tokenize_pairs",
    "collate", "encode", "TemplateScore", "KnownTriplet", "score_pairs", "score_triplets", "known_triplets",
    "KnowledgeSet", "TargetKG", "ControlKG", "TargetSpec", "parse_spec", "in_target", "touches_family",
    "select_target", "select_control", "check_disjoint", "candidate_targets",
]


class KGError(ValueError):
    """A knowledge-graph request that cannot be met; the message says how to fix it."""


WORDNET_RELATIONS = ("IsA", "PartOf", "MemberOf", "MadeOf")
RELATIONS = WORDNET_RELATIONS + ("UsedFor", "AtLocation", "CapableOf", "HasProperty")


def check_relation(relation: str) -> str:
    """The canonical spelling of a relation name (case-insensitive), or :class:`KGError`."""
    for name in RELATIONS:
        if relation.lower() == name.lower():
            return name
    raise KGError(f"Unknown relation {relation!r}. Known relations: {', '.join(RELATIONS)}.")


# --------------------------------------------------------------------------------------------
# Triplets and templates
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Triplet:
    """``(head, relation, tail)``. Equality and hashing use the words only, so the same fact from
    two synsets or two sources is one triplet; ids and source are provenance."""

    head: str
    relation: str
    tail: str
    source: str = field(default="", compare=False)
    head_id: str | None = field(default=None, compare=False)
    tail_id: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.relation not in RELATIONS:
            object.__setattr__(self, "relation", check_relation(self.relation))
        if not self.head.strip() or not self.tail.strip():
            raise KGError(f"Triplet {self.head!r} {self.relation} {self.tail!r} has an empty head or tail.")

    def __str__(self) -> str:
        return f"({self.head}, {self.relation}, {self.tail})"


@dataclass(frozen=True)
class Template:
    """A verbalization of one relation. ``text`` ends with ``{tail}``; placeholders: ``{head}``,
    ``{tail}``, ``{a}`` (a/an for the head, empty for proper nouns), ``{a_tail}`` (same for the tail)."""

    name: str
    relation: str
    text: str
    heldout: bool = False

    def __post_init__(self) -> None:
        if not self.text.endswith("{tail}") or self.text.count("{tail}") != 1:
            raise KGError(f"Template {self.name!r} must end with '{{tail}}' (the continuation): {self.text!r}")


def _t(name: str, relation: str, text: str, heldout: bool = False) -> Template:
    return Template(name, relation, text, heldout)


TEMPLATES: dict[str, tuple[Template, ...]] = {
    "IsA": (
        _t("isa_kind", "IsA", "{a} {head} is a kind of {tail}"),
        _t("isa_article", "IsA", "{a} {head} is {a_tail} {tail}"),
        _t("isa_type", "IsA", "{a} {head} is a type of {tail}", heldout=True),
        _t("isa_example", "IsA", "{a} {head} is an example of {a_tail} {tail}", heldout=True),
    ),
    "PartOf": (
        _t("partof_part", "PartOf", "{a} {head} is part of {a_tail} {tail}"),
        _t("partof_the", "PartOf", "The {head} is part of the {tail}"),
        _t("partof_component", "PartOf", "{a} {head} is a component of {a_tail} {tail}", heldout=True),
    ),
    "MemberOf": (
        _t("memberof_member", "MemberOf", "{a} {head} is a member of {a_tail} {tail}"),
        _t("memberof_the", "MemberOf", "The {head} is a member of the {tail}"),
        _t("memberof_belongs", "MemberOf", "{a} {head} belongs to {a_tail} {tail}", heldout=True),
    ),
    "MadeOf": (
        _t("madeof_made", "MadeOf", "{a} {head} is made of {tail}"),
        _t("madeof_bare", "MadeOf", "{head} is made of {tail}"),
        _t("madeof_from", "MadeOf", "{a} {head} is made from {tail}"),
        _t("madeof_consists", "MadeOf", "{a} {head} consists of {tail}", heldout=True),
    ),
    "UsedFor": (
        _t("usedfor_used", "UsedFor", "{a} {head} is used for {tail}"),
        _t("usedfor_use", "UsedFor", "You can use {a} {head} for {tail}"),
        _t("usedfor_useful", "UsedFor", "{a} {head} is useful for {tail}", heldout=True),
    ),
    "AtLocation": (
        _t("atlocation_likely", "AtLocation", "You are likely to find {a} {head} in {a_tail} {tail}"),
        _t("atlocation_found", "AtLocation", "{a} {head} is usually found in {a_tail} {tail}"),
        _t("atlocation_can", "AtLocation", "You can find {a} {head} in {a_tail} {tail}", heldout=True),
    ),
    "CapableOf": (
        _t("capableof_can", "CapableOf", "{a} {head} can {tail}"),
        _t("capableof_able", "CapableOf", "{a} {head} is able to {tail}"),
        _t("capableof_knows", "CapableOf", "{a} {head} knows how to {tail}", heldout=True),
    ),
    "HasProperty": (
        _t("hasproperty_is", "HasProperty", "{a} {head} is {tail}"),
        _t("hasproperty_usually", "HasProperty", "{a} {head} is usually {tail}"),
        _t("hasproperty_tends", "HasProperty", "{a} {head} tends to be {tail}", heldout=True),
    ),
}
TEMPLATE_BY_NAME: dict[str, Template] = {t.name: t for ts in TEMPLATES.values() for t in ts}


def get_template(name: str | Template) -> Template:
    if isinstance(name, Template):
        return name
    try:
        return TEMPLATE_BY_NAME[name]
    except KeyError:
        close = difflib.get_close_matches(name, TEMPLATE_BY_NAME, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KGError(f"Unknown template {name!r}.{hint} Templates are listed in kg.TEMPLATES.") from None


def templates_for(relation: str, *, heldout: bool | None = False) -> tuple[Template, ...]:
    """Templates of a relation: training ones (``heldout=False``), held-out ones (``True``) or all (``None``)."""
    relation = check_relation(relation)
    return tuple(t for t in TEMPLATES[relation] if heldout is None or t.heldout == heldout)


_WORDNET_ID = re.compile(r"^\d{8}$")
_A_BEFORE_VOWEL = re.compile(r"^(uni|use|usa|usu|ute|uti|uto|ura|ure|uri|uro|eu|ewe|one\b|once|ouija|ubiq|uk|ufo)")
_AN_BEFORE_CONSONANT = re.compile(r"^(hour|honest|honor|honour|heir|herb\b)")


_COMMON_CAPITALIZED = re.compile(r"(an|ean|ian|ese|ist|ite|er|man|woman|ic)$")


def is_proper(word: str, ident: str | None = None) -> bool:
    """Whether a noun takes no article. Lowercase words never; a capitalized WordNet synset is
    proper when it is an instance (``Paris``) or a capitalized non-instance that does not look like
    a demonym or follower (``Chordata`` yes; ``European``, ``Christian``, ``Marxist`` no); any other
    capitalized word is proper."""
    word = word.strip()
    if not word or not word[0].isupper():
        return False
    if ident and _WORDNET_ID.match(ident):
        graph = load_graph()
        if ident in graph.instance_parents:
            return True
        return not (" " not in word and _COMMON_CAPITALIZED.search(word))
    return True


def article(word: str, proper: bool | None = None) -> str:
    """Indefinite article for a noun: "a"/"an" (an apple, a unicorn, an hour); empty for a proper
    noun (``proper=None``: guessed from a capital first letter)."""
    word = word.strip()
    if not word or (proper if proper is not None else word[0].isupper()):
        return ""
    w = word.lower()
    if _AN_BEFORE_CONSONANT.match(w):
        return "an"
    if w[0] in "aeiou" and not _A_BEFORE_VOWEL.match(w):
        return "an"
    return "a"


def render(triplet: Triplet, template: str | Template) -> str:
    """The whole sentence, capitalized: ``"A dog is a kind of animal"``."""
    prompt, continuation = verbalize(triplet, template)
    return prompt + continuation


def verbalize(triplet: Triplet, template: str | Template) -> tuple[str, str]:
    """``(prompt, continuation)``: ``("A dog is a kind of", " animal")``.

    The prompt is the sentence before the tail (first letter capitalized, no trailing space); the
    continuation is the tail with a leading space, so ``prompt + continuation`` is the sentence.
    """
    template = get_template(template)
    if template.relation != triplet.relation:
        raise KGError(
            f"Template {template.name!r} verbalizes {template.relation}, not {triplet.relation} ({triplet}). "
            f"Use one of {[t.name for t in TEMPLATES[triplet.relation]]}."
        )
    before = template.text[: -len("{tail}")]
    a_head = article(triplet.head, is_proper(triplet.head, triplet.head_id))
    a_tail = article(triplet.tail, is_proper(triplet.tail, triplet.tail_id))
    prompt = before.format(head=triplet.head, a=a_head, a_tail=a_tail)
    prompt = " ".join(prompt.split())  # empty articles leave double spaces
    prompt = prompt[:1].upper() + prompt[1:]
    return prompt, " " + triplet.tail


# --------------------------------------------------------------------------------------------
# Sources: WordNet (shipped) and ConceptNet (CSV)
# --------------------------------------------------------------------------------------------

_WORD_RE = re.compile(r"^[A-Za-z][A-Za-z'\-]*$")


def usable_lemma(lemma: str, max_words: int = 2) -> bool:
    """Single-word-ish: at most ``max_words`` words of letters (hyphen and apostrophe allowed)."""
    words = lemma.split()
    return 0 < len(words) <= max_words and all(_WORD_RE.match(w) and len(w) > 1 for w in words)


def load_wordnet(
    relations: Iterable[str] = WORDNET_RELATIONS,
    *,
    isa_depth: int = 1,
    max_words: int = 2,
    instances: bool = True,
    min_count: int = 0,
    path: str | Path | None = None,
) -> list[Triplet]:
    """Triplets from the shipped WordNet 3.0 noun graph (no WordNet installation needed).

    Args:
        relations: any of ``IsA`` (noun hypernymy, instance hypernymy included), ``PartOf``,
            ``MemberOf``, ``MadeOf`` (part, member and substance meronymy).
        isa_depth: IsA links up to this many hypernym steps (1: direct hypernyms only; 3 also
            gives ``(dog, IsA, animal)``, two steps above ``canine``/``domestic animal``).
        max_words: keep synsets whose first lemma has at most this many words (letters only).
        instances: include instance hypernymy (``(Paris, IsA, national capital)``).
        min_count: keep triplets whose head synset has at least this SemCor tag count (a
            familiarity filter: 1 keeps about 13.7k noun synsets, 3 about 6k; dog has 42).
        path: another compact file (default: the shipped one).

    Each triplet carries the WordNet synset offsets of head and tail (``head_id``, ``tail_id``),
    which :func:`select_target` uses for ancestry. Duplicates in words are dropped (first kept,
    synsets in file order).
    """
    relations = [check_relation(r) for r in relations]
    unsupported = [r for r in relations if r not in WORDNET_RELATIONS]
    if unsupported:
        raise KGError(f"WordNet has no {unsupported} triplets; use relations among {WORDNET_RELATIONS}.")
    if isa_depth < 1:
        raise KGError(f"isa_depth must be >= 1, got {isa_depth}.")
    graph = load_graph(path)
    lemma = graph.lemma
    ok: dict[str, bool] = {o: usable_lemma(lemma(o), max_words) for o in graph.names}
    heads = {o for o in graph.names if ok[o] and graph.count(o) >= min_count}
    out: dict[Triplet, None] = {}
    for relation in relations:
        if relation == "IsA":
            for head in graph.names:
                if head not in heads or (not instances and head in graph.instance_parents):
                    continue
                if isa_depth == 1:
                    tails = list(graph.all_parents(head))
                else:
                    tails = [t for t, _ in graph.hypernym_paths(head, isa_depth)]
                for tail in tails:
                    if ok[tail] and lemma(tail) != lemma(head):
                        out.setdefault(Triplet(lemma(head), "IsA", lemma(tail), "wordnet", head, tail))
        else:
            for head, tail in graph.pairs[relation]:
                if head in heads and ok[tail] and lemma(head) != lemma(tail):
                    out.setdefault(Triplet(lemma(head), relation, lemma(tail), "wordnet", head, tail))
    return list(out)


#: ConceptNet relation -> (our relation, True when head and tail swap)
CONCEPTNET_RELATIONS: dict[str, tuple[str, bool]] = {
    "IsA": ("IsA", False),
    "PartOf": ("PartOf", False),
    "HasA": ("PartOf", True),  # (car, HasA, wheel) -> (wheel, PartOf, car)
    "MemberOf": ("MemberOf", False),
    "MadeOf": ("MadeOf", False),
    "UsedFor": ("UsedFor", False),
    "AtLocation": ("AtLocation", False),
    "CapableOf": ("CapableOf", False),
    "HasProperty": ("HasProperty", False),
}


def _concept_text(uri: str, language: str) -> str | None:
    parts = uri.split("/")  # ['', 'c', 'en', 'ice_cream', 'n', ...]
    if len(parts) < 4 or parts[1] != "c" or parts[2] != language or not parts[3]:
        return None
    return parts[3].replace("_", " ").strip()


def load_conceptnet(
    path: str | Path,
    relations: Iterable[str] | None = None,
    *,
    language: str = "en",
    min_weight: float = 0.0,
    max_words: int = 3,
) -> list[Triplet]:
    """Triplets from a ConceptNet 5 assertions CSV (``.csv`` or ``.csv.gz``).

    Each line is tab-separated: edge URI, relation (``/r/IsA``), head (``/c/en/dog/n``), tail
    (``/c/en/animal``), JSON metadata (``{"weight": 2.0, ...}``). Only edges whose head and tail
    are both in ``language`` are kept; ``/r/HasA`` becomes an inverted ``PartOf``; relations
    without templates (``RelatedTo``, ``Synonym``...) are skipped.

    Args:
        relations: restrict to these of our relations (e.g. ``("IsA", "PartOf")``).
        min_weight: drop edges whose metadata weight is lower.
        max_words: drop concepts with more words than this.
    """
    wanted = None if relations is None else {check_relation(r) for r in relations}
    path = Path(path)
    if not path.exists():
        raise KGError(f"ConceptNet file {path} does not exist; download conceptnet-assertions-5.7.0.csv.gz first.")
    opener = gzip.open if path.suffix == ".gz" else open
    out: dict[Triplet, None] = {}
    marker = f"/c/{language}/"
    with opener(path, "rt", encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 4:
                if line.strip():
                    raise KGError(
                        f"{path}:{line_no} is not a ConceptNet assertions line (want 5 tab-separated fields: "
                        "URI, relation, head, tail, JSON)."
                    )
                continue
            rel_uri, head_uri, tail_uri = fields[1], fields[2], fields[3]
            if not (head_uri.startswith(marker) and tail_uri.startswith(marker)):
                continue
            mapped = CONCEPTNET_RELATIONS.get(rel_uri.removeprefix("/r/"))
            if mapped is None or (wanted is not None and mapped[0] not in wanted):
                continue
            if min_weight > 0:
                try:
                    weight = float(json.loads(fields[4]).get("weight", 1.0)) if len(fields) > 4 else 1.0
                except (ValueError, AttributeError):
                    weight = 1.0
                if weight < min_weight:
                    continue
            head, tail = _concept_text(head_uri, language), _concept_text(tail_uri, language)
            if not head or not tail or head == tail:
                continue
            if len(head.split()) > max_words or len(tail.split()) > max_words:
                continue
            relation, swap = mapped
            if swap:
                head, tail, head_uri, tail_uri = tail, head, tail_uri, head_uri
            out.setdefault(Triplet(head, relation, tail, "conceptnet", head_uri, tail_uri))
    return list(out)


# --------------------------------------------------------------------------------------------
# Encoding: padded batches ready for a loss
# --------------------------------------------------------------------------------------------


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

    def predict_logits(self, logits: Float[Tensor, "batch pos vocab"]) -> Float[Tensor, "batch vocab"]:
        """The logits at each row's ``predict_pos`` (the distribution over the first tail token)."""
        rows = torch.arange(len(self), device=logits.device)
        return logits[rows, self.predict_pos.to(logits.device)]

    def tail_logprobs(self, logits: Float[Tensor, "batch pos vocab"]) -> Float[Tensor, "batch tail"]:
        """Log-probability of every tail token (0 where ``tail_mask`` is False). Differentiable."""
        device = logits.device
        width = self.tail_tokens.shape[1]
        pos = self.predict_pos.to(device)[:, None] + torch.arange(width, device=device)[None, :]
        pos = pos.clamp(max=logits.shape[1] - 1)
        rows = torch.arange(len(self), device=device)[:, None]
        picked = logits[rows, pos].float().log_softmax(-1)  # [batch, tail, vocab]
        lp = picked.gather(-1, self.tail_tokens.to(device)[..., None]).squeeze(-1)
        return lp * self.tail_mask.to(device)

    def tail_nll(self, logits: Float[Tensor, "batch pos vocab"]) -> Float[Tensor, " batch"]:
        """Mean negative log-likelihood of each row's tail (all its tokens). Differentiable."""
        mask = self.tail_mask.to(logits.device)
        return -(self.tail_logprobs(logits).sum(-1) / mask.sum(-1).clamp(min=1))

    @torch.no_grad()
    def score(self, logits: Float[Tensor, "batch pos vocab"]) -> TailScores:
        """Rank and log-probabilities of the tails under these logits."""
        first = self.predict_logits(logits).float()
        target = self.tail_token.to(first.device)
        target_logit = first.gather(-1, target[:, None])
        rank = (first > target_logit).sum(-1) + 1
        logprob = first.log_softmax(-1).gather(-1, target[:, None]).squeeze(-1)
        return TailScores(rank=rank.cpu(), logprob=logprob.cpu(), tail_logprob=(-self.tail_nll(logits)).cpu())


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


# --------------------------------------------------------------------------------------------
# Knowledge filtering
# --------------------------------------------------------------------------------------------


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
    def heldout(self) -> bool:
        return TEMPLATE_BY_NAME[self.template].heldout


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


@torch.inference_mode()
def score_pairs(model, batch: KGBatch, batch_size: int = 64) -> TailScores:
    """Run ``model`` on a :class:`KGBatch` in sub-batches (rows sorted by length to limit padding)."""
    device = _model_device(model)
    order = sorted(range(len(batch)), key=lambda i: int(batch.attention_mask[i].sum()))
    rank = torch.zeros(len(batch), dtype=torch.long)
    logprob = torch.zeros(len(batch))
    tail_lp = torch.zeros(len(batch))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        sub = batch[rows].to(device)
        # the last column is never an input that predicts a tail token: skip it
        scores = sub.score(model(sub.tokens[:, :-1]))
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
    """Score every triplet under every training template of its relation (and the held-out ones
    with ``heldout=True``), one forward pass per distinct sentence, and pick each triplet's template.

    Returns one :class:`KnownTriplet` per input triplet (``known`` says whether it passes top-k).
    """
    if top_k < 1:
        raise KGError(f"top_k must be >= 1, got {top_k}.")
    tokenizer = _tokenizer_of(model)
    keys: dict[tuple[str, str], int] = {}
    per_triplet: list[list[tuple[str, int]]] = []
    for triplet in triplets:
        rows = []
        for template in templates_for(triplet.relation, heldout=None if heldout else False):
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
        best = max((s for s in ts if not s.heldout), key=lambda s: s.tail_logprob)
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
    calibration of METRICS.md) under the training template with the lowest tail perplexity.

    Args:
        model: a TransformerBridge (``model(tokens)`` gives logits; ``model.tokenizer``).
        triplets: candidates, e.g. from :func:`load_wordnet`.
        batch_size: rows per forward pass (right-padded, rows of similar length together).
        heldout: also score the held-out templates (kept in ``KnownTriplet.scores``); off by
            default since held-out scores matter for the few target triplets only (score those
            later with ``encode(..., template="heldout")``) and each template costs a forward pass.
        prepend_bos: ``None`` uses the tokenizer's default special tokens.
    """
    return [k for k in score_triplets(
        model, triplets, top_k=top_k, batch_size=batch_size, heldout=heldout, prepend_bos=prepend_bos
    ) if k.known]


# --------------------------------------------------------------------------------------------
# Target and control knowledge sets
# --------------------------------------------------------------------------------------------


@dataclass
class KnowledgeSet:
    """A named list of known triplets (a TargetKG or a ControlKG)."""

    name: str
    items: list[KnownTriplet]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[KnownTriplet]:
        return iter(self.items)

    @property
    def triplets(self) -> list[Triplet]:
        return [k.triplet for k in self.items]

    def encode(self, tokenizer, template: str = "chosen", prepend_bos: bool | None = None) -> KGBatch:
        """See :func:`encode`."""
        return encode(tokenizer, self.items, template=template, prepend_bos=prepend_bos)

    def summary(self, n: int = 5) -> str:
        relations = Counter(k.triplet.relation for k in self.items)
        lines = [f"{type(self).__name__} {self.name!r}: {len(self)} triplets {dict(relations)}"]
        lines += [f"  {k}" for k in self.items[:n]]
        return "\n".join(lines)


@dataclass
class TargetKG(KnowledgeSet):
    """Knowledge to remove: one coherent family (see :func:`select_target`)."""

    spec: TargetSpec | None = None


@dataclass
class ControlKG(KnowledgeSet):
    """Knowledge to keep: disjoint from every target and away from their families."""


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
        template: ``"chosen"`` (each item's chosen training template, one row per item),
            ``"heldout"`` (one row per held-out template of the item's relation), ``"train"``
            (one row per training template), ``"all"``, or a template name. ``item_index`` maps
            rows back to ``items``.
    """
    tokenizer = _tokenizer_of(tokenizer)
    rows: list[tuple[int, Triplet, Template]] = []
    for i, item in enumerate(items):
        triplet = item.triplet if isinstance(item, KnownTriplet) else item
        if template == "chosen":
            if not isinstance(item, KnownTriplet):
                raise KGError(
                    f"{triplet} has no chosen template (it was not scored); run known_triplets() first "
                    "or pass template='train', 'heldout', 'all' or a template name."
                )
            chosen = [get_template(item.template)]
        elif template in ("heldout", "train", "all"):
            flag = {"heldout": True, "train": False, "all": None}[template]
            chosen = list(templates_for(triplet.relation, heldout=flag))
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


@dataclass(frozen=True)
class TargetSpec:
    """A parsed target spec. ``kind``: ``"under"`` (relation's tail under ``synset``; relation
    ``None`` for any), ``"relation"`` or ``"tail"``."""

    text: str
    kind: str
    relation: str | None = None
    synset: str | None = None
    tail: str | None = None

    def __str__(self) -> str:
        return self.text


def _synsets_of(graph: WordNetGraph, word: str, ident: str | None) -> list[str]:
    if ident and _WORDNET_ID.match(ident):
        return [ident]
    return graph.find(word)


def _under(graph: WordNetGraph, word: str, ident: str | None, synset: str) -> bool:
    return any(graph.is_under(s, synset) for s in _synsets_of(graph, word, ident))


def parse_spec(spec: str | TargetSpec, graph: WordNetGraph | None = None) -> TargetSpec:
    """Parse ``isa:animal``, ``partof:vehicle``, ``any:food``, ``relation:PartOf``, ``tail:animal``."""
    if isinstance(spec, TargetSpec):
        return spec
    kind, sep, value = spec.partition(":")
    kind, value = kind.strip().lower(), value.strip()
    if not sep or not value:
        raise KGError(
            f"Bad target spec {spec!r}: write 'isa:<synset>' (e.g. 'isa:animal'), '<relation>:<synset>', "
            "'any:<synset>', 'relation:<Relation>' or 'tail:<word>'."
        )
    if kind == "relation":
        return TargetSpec(spec, "relation", relation=check_relation(value))
    if kind == "tail":
        return TargetSpec(spec, "tail", tail=value)
    relation = None if kind == "any" else check_relation(kind)
    graph = graph or load_graph()
    found = graph.find(value)
    if not found:
        lemmas = {graph.lemma(o).lower() for o in graph.names}
        close = difflib.get_close_matches(value.lower().replace("_", " "), lemmas, n=3)
        hint = f" Close: {', '.join(close)}." if close else ""
        raise KGError(
            f"Unknown WordNet synset {value!r} in target spec {spec!r}.{hint} "
            "Give a noun lemma ('animal'), a synset name ('building.n.01') or an 8-digit offset."
        )
    if len(found) > 1 and "." not in value and not _WORDNET_ID.match(value):
        def where(o: str) -> str:
            parents = graph.all_parents(o)
            return f"{graph.names[o]} (under {graph.lemma(parents[0])})" if parents else graph.names[o]

        warnings.warn(
            f"Target spec {spec!r}: {value!r} names {len(found)} synsets; using the first sense {where(found[0])}. "
            f"Others: {', '.join(where(o) for o in found[1:4])}. Write e.g. '{kind}:{graph.names[found[1]]}' to pick one.",
            stacklevel=3,
        )
    return TargetSpec(spec, "under", relation=relation, synset=found[0])


def in_target(triplet: Triplet, spec: str | TargetSpec, graph: WordNetGraph | None = None) -> bool:
    """Whether a triplet belongs to the target family of ``spec``."""
    spec = parse_spec(spec, graph)
    if spec.kind == "relation":
        return triplet.relation == spec.relation
    if spec.kind == "tail":
        return triplet.tail.lower() == spec.tail.lower()
    if spec.relation is not None and triplet.relation != spec.relation:
        return False
    return _under(graph or load_graph(), triplet.tail, triplet.tail_id, spec.synset)


def touches_family(triplet: Triplet, spec: str | TargetSpec, graph: WordNetGraph | None = None) -> bool:
    """Whether a triplet is anywhere near the family of ``spec`` (a control must not be): same
    relation for ``relation:``; head or tail under the synset for synset specs (any relation);
    head or tail equal to the word for ``tail:``."""
    spec = parse_spec(spec, graph)
    if spec.kind == "relation":
        return triplet.relation == spec.relation
    if spec.kind == "tail":
        word = spec.tail.lower()
        return triplet.tail.lower() == word or triplet.head.lower() == word
    graph = graph or load_graph()
    return _under(graph, triplet.tail, triplet.tail_id, spec.synset) or _under(
        graph, triplet.head, triplet.head_id, spec.synset
    )


def _sample(items: list[KnownTriplet], n: int | None, seed: int) -> list[KnownTriplet]:
    if n is None or len(items) <= n:
        return list(items)
    keep = set(random.Random(seed).sample(range(len(items)), n))
    return [k for i, k in enumerate(items) if i in keep]


def select_target(
    spec: str | TargetSpec,
    known: Sequence[KnownTriplet],
    *,
    n: int | None = None,
    min_n: int = 1,
    seed: int = 0,
) -> TargetKG:
    """The TargetKG: the known triplets in the family of ``spec``.

    Args:
        spec: ``"isa:animal"`` (IsA triplets whose tail is the synset or lies under it),
            ``"partof:vehicle"`` / ``"memberof:..."`` / ``"madeof:..."`` (same for that relation),
            ``"any:food"`` (any relation), ``"relation:PartOf"`` (a whole relation),
            ``"tail:animal"`` (exact tail word). A bare lemma means its first WordNet sense.
        known: output of :func:`known_triplets`.
        n: sample at most this many (seeded; input order kept).
        min_n: raise :class:`KGError` when fewer match.
    """
    graph = load_graph()
    parsed = parse_spec(spec, graph)
    matching = [k for k in known if in_target(k.triplet, parsed, graph)]
    if len(matching) < max(min_n, 1):
        what = f"synset {graph.names[parsed.synset]}" if parsed.synset else repr(parsed.text)
        # Targets these same scored facts would fill: a suggestion that costs no forward pass.
        broader = candidate_targets(known, min_n=max(min_n, 1), max_n=len(known))[:3]
        suggest = f" (with enough known facts here: {', '.join(f'{s} ({c})' for s, c in broader)})" if broader else ""
        raise KGError(
            f"Target {parsed.text!r} ({what}) holds {len(matching)} of the {len(known)} scored facts the model "
            f"knows (need {max(min_n, 1)}). On the command line: a broader --target{suggest}, "
            f"--min-target {len(matching) or 1} to accept fewer, or --n-candidates N to score more of the family; "
            "in Python the SubnetworkConfig fields target, min_target, n_candidates."
        )
    return TargetKG(name=parsed.text, items=_sample(matching, n, seed), spec=parsed)


def check_disjoint(target: KnowledgeSet | Sequence[KnowledgeSet], control: KnowledgeSet) -> None:
    """Raise :class:`KGError` if the control shares a triplet with any target."""
    targets = [target] if isinstance(target, KnowledgeSet) else list(target)
    control_set = set(control.triplets)
    for t in targets:
        shared = [x for x in t.triplets if x in control_set]
        if shared:
            raise KGError(
                f"Target {t.name!r} and control {control.name!r} share {len(shared)} triplets "
                f"(e.g. {shared[0]}). Build the control with select_control(known, exclude=target)."
            )


def select_control(
    known: Sequence[KnownTriplet],
    exclude: KnowledgeSet | Sequence[KnowledgeSet] | str | Sequence[str] = (),
    *,
    n: int | None = 200,
    seed: int = 0,
    relations: Iterable[str] | None = None,
) -> ControlKG:
    """The ControlKG: known triplets to preserve, away from every excluded target.

    A candidate is dropped when it is a target triplet, touches a target's family
    (:func:`touches_family`: e.g. any triplet with head or tail under ``animal`` for
    ``isa:animal``), or mentions a word that is the head or tail of a target triplet.

    Args:
        exclude: targets (:class:`TargetKG`) or spec strings.
        n: sample this many (seeded); fewer are returned, with a warning, if fewer remain.
        relations: restrict the control to these relations.
    """
    graph = load_graph()
    if isinstance(exclude, (str, KnowledgeSet)):
        exclude = [exclude]
    specs: list[TargetSpec] = []
    targets: list[KnowledgeSet] = []
    for ex in exclude:
        if isinstance(ex, KnowledgeSet):
            targets.append(ex)
            spec = getattr(ex, "spec", None)
            if spec is not None:
                specs.append(spec)
        else:
            specs.append(parse_spec(ex, graph))
    wanted = None if relations is None else {check_relation(r) for r in relations}
    banned = {x for t in targets for x in t.triplets}
    words = {w.lower() for t in targets for x in t.triplets for w in (x.head, x.tail)}
    pool = [
        k
        for k in known
        if k.triplet not in banned
        and (wanted is None or k.triplet.relation in wanted)
        and k.triplet.head.lower() not in words
        and k.triplet.tail.lower() not in words
        and not any(touches_family(k.triplet, s, graph) for s in specs)
    ]
    if not pool:
        raise KGError(
            f"No control triplets left among {len(known)} known ones after excluding "
            f"{[s.text for s in specs] or [t.name for t in targets]}. Score more triplets with known_triplets()."
        )
    if n is not None and len(pool) < n:
        warnings.warn(f"Only {len(pool)} control triplets available (asked for {n}).", stacklevel=2)
    name = "control" + (f" (excluding {', '.join(s.text for s in specs)})" if specs else "")
    control = ControlKG(name=name, items=_sample(pool, n, seed))
    check_disjoint(targets, control)
    return control


def candidate_targets(
    known: Sequence[KnownTriplet],
    *,
    relation: str = "IsA",
    min_n: int = 10,
    max_n: int = 40,
) -> list[tuple[str, int]]:
    """Synset specs (``"isa:animal.n.01"``) with between ``min_n`` and ``max_n`` known triplets of
    ``relation`` whose tail lies under them, most first. Only WordNet-sourced triplets count."""
    relation = check_relation(relation)
    graph = load_graph()
    counts: Counter[str] = Counter()
    for k in known:
        t = k.triplet
        if t.relation != relation or not (t.tail_id and _WORDNET_ID.match(t.tail_id)):
            continue
        for synset in {t.tail_id} | graph.ancestors(t.tail_id):
            counts[synset] += 1
    return [
        (f"{relation.lower()}:{graph.names[s]}", c) for s, c in counts.most_common() if min_n <= c <= max_n
    ]

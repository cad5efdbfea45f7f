"""Knowledge-graph triplets and the templates that turn them into sentences.

* A :class:`Triplet` is ``(head, relation, tail)`` in plain words: ``("dog", "IsA", "canine")``.
  Relation directions: ``(wheel, PartOf, car)``, ``(player, MemberOf, team)``,
  ``(table, MadeOf, wood)``.
* :data:`TEMPLATES` verbalize each relation several ways; the text before the tail is the prompt,
  the tail with a leading space is the continuation. Each template has a role: ``train`` (facts are
  scored, chosen and trained on them), ``validation`` (paraphrases a run may choose its final mask on)
  or ``heldout`` (paraphrases kept for the reported evaluation, never trained or chosen on).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Literal

from circuitcut.data.wordnet import load_graph


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

    @property
    def tail_named_in_head(self) -> bool:
        """Whether a word of the tail begins with a word of the head or the other way round (``(green frog,
        IsA, frog)``, ``(canned food, IsA, foodstuff)``): a model can answer such a fact by copying part of
        its prompt instead of recalling it (the "helpful names" that LAMA-UHN, Poerner et al. 2020, drops)."""
        head, tail = _content_words(self.head), _content_words(self.tail)
        return any(t.startswith(h) or h.startswith(t) for h in head for t in tail)


def _content_words(text: str) -> set[str]:
    """Lower-case words of three letters or more (``air-to-ground missile``: air, ground, missile)."""
    return set(re.findall(r"[a-z]{3,}", text.lower()))


TemplateRole = Literal["train", "validation", "heldout"]
TEMPLATE_ROLES: tuple[TemplateRole, ...] = ("train", "validation", "heldout")


@dataclass(frozen=True)
class Template:
    """A verbalization of one relation. ``text`` ends with ``{tail}``; placeholders: ``{head}``,
    ``{tail}``, ``{a}`` (a/an for the head, empty for proper nouns), ``{a_tail}`` (same for the tail)."""

    name: str
    relation: str
    text: str
    role: TemplateRole = "train"

    @property
    def heldout(self) -> bool:
        return self.role == "heldout"

    def __post_init__(self) -> None:
        if self.role not in TEMPLATE_ROLES:
            raise KGError(f"Template {self.name!r} has role {self.role!r}; use one of {', '.join(TEMPLATE_ROLES)}.")
        if not self.text.endswith("{tail}") or self.text.count("{tail}") != 1:
            raise KGError(f"Template {self.name!r} must end with '{{tail}}' (the continuation): {self.text!r}")


# Each relation's templates as (name, text, role). IsA's validation paraphrases (for runs that train on
# every training template) are one near the training wording and one apart from it, each known to
# SmolLM2 for at least half of the animal, food and vehicle target facts.
_T, _V, _H = "train", "validation", "heldout"
_TEMPLATE_TEXTS: dict[str, tuple[tuple[str, str, TemplateRole], ...]] = {
    "IsA": (
        ("isa_kind", "{a} {head} is a kind of {tail}", _T),
        ("isa_article", "{a} {head} is {a_tail} {tail}", _T),
        ("isa_sort", "{a} {head} is a sort of {tail}", _V),
        ("isa_classified", "{a} {head} is classified as {a_tail} {tail}", _V),
        ("isa_type", "{a} {head} is a type of {tail}", _H),
        ("isa_example", "{a} {head} is an example of {a_tail} {tail}", _H),
    ),
    "PartOf": (
        ("partof_part", "{a} {head} is part of {a_tail} {tail}", _T),
        ("partof_the", "The {head} is part of the {tail}", _T),
        ("partof_component", "{a} {head} is a component of {a_tail} {tail}", _H),
    ),
    "MemberOf": (
        ("memberof_member", "{a} {head} is a member of {a_tail} {tail}", _T),
        ("memberof_the", "The {head} is a member of the {tail}", _T),
        ("memberof_belongs", "{a} {head} belongs to {a_tail} {tail}", _H),
    ),
    "MadeOf": (
        ("madeof_made", "{a} {head} is made of {tail}", _T),
        ("madeof_bare", "{head} is made of {tail}", _T),
        ("madeof_from", "{a} {head} is made from {tail}", _T),
        ("madeof_consists", "{a} {head} consists of {tail}", _H),
    ),
    "UsedFor": (
        ("usedfor_used", "{a} {head} is used for {tail}", _T),
        ("usedfor_use", "You can use {a} {head} for {tail}", _T),
        ("usedfor_useful", "{a} {head} is useful for {tail}", _H),
    ),
    "AtLocation": (
        ("atlocation_likely", "You are likely to find {a} {head} in {a_tail} {tail}", _T),
        ("atlocation_found", "{a} {head} is usually found in {a_tail} {tail}", _T),
        ("atlocation_can", "You can find {a} {head} in {a_tail} {tail}", _H),
    ),
    "CapableOf": (
        ("capableof_can", "{a} {head} can {tail}", _T),
        ("capableof_able", "{a} {head} is able to {tail}", _T),
        ("capableof_knows", "{a} {head} knows how to {tail}", _H),
    ),
    "HasProperty": (
        ("hasproperty_is", "{a} {head} is {tail}", _T),
        ("hasproperty_usually", "{a} {head} is usually {tail}", _T),
        ("hasproperty_tends", "{a} {head} tends to be {tail}", _H),
    ),
}
TEMPLATES: dict[str, tuple[Template, ...]] = {
    relation: tuple(Template(name, relation, text, role) for name, text, role in rows)
    for relation, rows in _TEMPLATE_TEXTS.items()
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


def templates_for(relation: str, role: TemplateRole | None = "train") -> tuple[Template, ...]:
    """Templates of a relation with one role (``train``, ``validation``, ``heldout``), or all (``None``)."""
    relation = check_relation(relation)
    return tuple(t for t in TEMPLATES[relation] if role is None or t.role == role)


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

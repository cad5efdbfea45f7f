"""Triplet sources: the shipped WordNet 3.0 noun graph and ConceptNet 5 assertion files."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable
from pathlib import Path

from circuitcut.data.kg.triplets import WORDNET_RELATIONS, KGError, Triplet, check_relation
from circuitcut.data.wordnet import load_graph


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

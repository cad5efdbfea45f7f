"""Target and control knowledge sets: the family of facts to remove (TargetKG) and the facts to
keep (ControlKG), disjoint from it and away from its family.

Target specs: ``"isa:animal"`` (IsA triplets whose tail lies under the synset, itself included),
``"partof:vehicle"`` (same for any relation), ``"relation:PartOf"`` (a whole relation),
``"tail:animal"`` (an exact tail word). Synsets: a lemma (first sense), ``"building.n.01"``, or an
offset ``"02913152"``.
"""

from __future__ import annotations

import difflib
import random
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from circuitcut.data.kg.batch import KGBatch
from circuitcut.data.kg.known import KnownTriplet, encode
from circuitcut.data.kg.triplets import _WORDNET_ID, KGError, Triplet, check_relation
from circuitcut.data.wordnet import WordNetGraph, load_graph


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

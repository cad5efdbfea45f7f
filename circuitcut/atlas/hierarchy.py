"""Where an atlas's targets sit in WordNet: each target's synset, the path length between two targets in the
hypernym graph, each target's parent among the others, and an order that keeps a family's targets together.

Targets are IsA specs (``isa:food.n.01``; a bare lemma means its first sense, as a run resolves it). Nothing
here needs a model or torch: only the shipped WordNet graph (:mod:`circuitcut.data.wordnet`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from circuitcut.data.wordnet import WordNetGraph, load_graph


def synset(target: str, graph: WordNetGraph | None = None) -> str:
    """The synset offset of an IsA target (``isa:food.n.01`` or ``food.n.01``)."""
    graph = graph or load_graph()
    kind, _, name = target.rpartition(":")
    found = graph.find(name) if kind in ("", "isa") else []
    if not found:
        raise ValueError(f"{target!r} is not an IsA target on a WordNet synset: write isa:SYNSET, e.g. "
                         "isa:animal.n.01 (a synset name, a lemma or an 8-digit offset).")
    return found[0]


def synset_name(target: str, graph: WordNetGraph | None = None) -> str:
    """``food.n.01`` for ``isa:food`` (the first sense, as a run resolves a lemma)."""
    graph = graph or load_graph()
    return graph.names[synset(target, graph)]


def _depths(graph: WordNetGraph, offset: str) -> dict[str, int]:
    """Each hypernym of ``offset`` (itself at 0) with its shortest number of steps up."""
    return {offset: 0, **dict(graph.hypernym_paths(offset, max_depth=10**6))}


def wordnet_distance(a: str, b: str, graph: WordNetGraph | None = None) -> int:
    """Steps between two targets' synsets in the hypernym graph: up from each to their nearest common
    hypernym (0 for the same synset, 1 for a parent and its child, 2 for siblings)."""
    graph = graph or load_graph()
    up_a, up_b = _depths(graph, synset(a, graph)), _depths(graph, synset(b, graph))
    shared = up_a.keys() & up_b.keys()
    # every noun lies under entity.n.01, so only a foreign graph file leaves two unconnected
    return min((up_a[s] + up_b[s] for s in shared), default=math.inf)  # type: ignore[return-value]


def parents(targets: Sequence[str], graph: WordNetGraph | None = None) -> dict[str, str | None]:
    """Each target's parent among ``targets``: the most specific target whose family holds its synset
    (``None``: a root).

    Most specific, not nearest: dog is two steps below animal (through domestic animal) but four below
    mammal, and its parent is mammal, which lies under animal itself."""
    graph = graph or load_graph()
    offsets = {t: synset(t, graph) for t in targets}
    out: dict[str, str | None] = {}
    for t in targets:
        above = [o for o in targets if offsets[o] != offsets[t] and graph.is_under(offsets[t], offsets[o])]
        # the candidate with the most other candidates above it; ties go to the first given
        out[t] = max(above, key=lambda o: sum(graph.is_under(offsets[o], offsets[c]) for c in above), default=None)
    return out


def hierarchy_order(targets: Sequence[str], graph: WordNetGraph | None = None) -> list[str]:
    """``targets`` depth first through their :func:`parents`: a parent, then its children's families, in the
    order given; so a heatmap in this order shows each family as a block."""
    parent = parents(targets, graph)
    order: list[str] = []

    def visit(node: str) -> None:
        order.append(node)
        for child in targets:
            if parent[child] == node:
                visit(child)

    for root in (t for t in targets if parent[t] is None):
        visit(root)
    return order


def distance_matrix(targets: Sequence[str], graph: WordNetGraph | None = None) -> list[list[float]]:
    """:func:`wordnet_distance` of every pair of ``targets``, as rows in their order."""
    graph = graph or load_graph()
    return [[float(wordnet_distance(a, b, graph)) for b in targets] for a in targets]

"""Knowledge-graph test helpers: facts without a model, and lookup in a triplet list."""

from __future__ import annotations

from circuitcut.data import kg


def known(triplet: kg.Triplet, rank: int = 1) -> kg.KnownTriplet:
    """A KnownTriplet without a model (for selection tests)."""
    template = kg.templates_for(triplet.relation)[0].name
    return kg.KnownTriplet(triplet, template, rank, -0.5, -0.5, rank <= 10)


def find(triplets, head, relation, tail):
    return next((t for t in triplets if (t.head, t.relation, t.tail) == (head, relation, tail)), None)

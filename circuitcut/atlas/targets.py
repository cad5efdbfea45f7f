"""The atlas's default targets, and the check that a model knows enough facts of each.

How :data:`DEFAULT_TARGETS` were chosen: for structure, from the WordNet noun graph shipped in the package
(:mod:`circuitcut.data.wordnet`), so that the atlas can ask whether the subnetworks follow the hierarchy:

* **nested families**: a parent and two or more of its children, under three unrelated roots: ``animal``
  (mammal, bird, reptile, insect; ``dog`` a grandchild under mammal), ``food`` in the sense the results use
  (``food.n.01``, nutrient: beverage, foodstuff) and ``artifact`` (vehicle, building, clothing, musical
  instrument); ``plant`` (tree, flower) is animal's sibling under organism;
* **siblings**: children of one parent (mammal, bird and reptile are vertebrates; tree and flower plants);
* **distant families**: body part, color, emotion and chemical element, far from each other and from the
  rest (an abstract attribute, a feeling, a substance, a part);
* each family with at least a few hundred IsA facts in WordNet (isa depth 3), and its synset named in full
  (``food.n.01``), so that no run depends on which sense a lemma means.

The families were chosen before any was run; whether the model knows enough facts of each is what
:func:`check_targets` measures (``circuitcut atlas targets --check``: one forward pass per candidate fact and
template, minutes per family on a CPU).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from circuitcut.atlas.hierarchy import hierarchy_order, parents, synset_name
from circuitcut.data.wordnet import load_graph

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from circuitcut.subnetwork.config import SubnetworkConfig

DEFAULT_TARGETS: tuple[str, ...] = (
    "isa:animal.n.01", "isa:mammal.n.01", "isa:bird.n.01", "isa:reptile.n.01", "isa:insect.n.01", "isa:dog.n.01",
    "isa:food.n.01", "isa:beverage.n.01", "isa:foodstuff.n.02",
    "isa:artifact.n.01", "isa:vehicle.n.01", "isa:building.n.01", "isa:clothing.n.01",
    "isa:musical_instrument.n.01",
    "isa:plant.n.02", "isa:tree.n.01", "isa:flower.n.01",
    "isa:body_part.n.01", "isa:color.n.01", "isa:emotion.n.01", "isa:chemical_element.n.01",
)
"""The atlas's families, parents before their children (see the module docstring for how they were chosen)."""

MIN_KNOWN = 20
"""Known facts a family needs: a run trains and reports on ``n_target`` (20) of them."""


def describe_targets(targets: Sequence[str] = DEFAULT_TARGETS) -> str:
    """The targets as an indented tree (a child under its nearest parent among them), each with its lemma."""
    graph = load_graph()
    parent = parents(targets, graph)

    def depth(t: str) -> int:
        return 0 if parent[t] is None else 1 + depth(parent[t])  # type: ignore[arg-type]

    return "\n".join(f"{'  ' * depth(t)}{t}" for t in hierarchy_order(targets, graph))


def check_targets(
    model: TransformerBridge, targets: Sequence[str] = DEFAULT_TARGETS, config: SubnetworkConfig | None = None,
    min_known: int = MIN_KNOWN,
) -> list[dict]:
    """For each target, how many of the facts a run would score the model knows, as a run finds them.

    The candidates are those a run with ``config`` (default: the default settings) samples
    (:func:`~circuitcut.subnetwork.data.candidate_facts`), scored as :func:`~circuitcut.subnetwork.data.build_kg`
    scores them. Rows: ``target``, ``synset``, ``scored`` candidates, ``known`` facts in the family, ``enough``
    (at least ``min_known``).
    """
    from circuitcut.data import kg
    from circuitcut.subnetwork.config import SubnetworkConfig
    from circuitcut.subnetwork.data import candidate_facts, check_target

    config = config or SubnetworkConfig()
    rows = []
    for target in targets:
        run = replace(config, target=target)
        spec = check_target(run)
        family, _ = candidate_facts(run, spec)
        known = [k for k in kg.known_triplets(model, family, top_k=run.known_top_k) if kg.in_target(k.triplet, spec)]
        rows.append({"target": target, "synset": synset_name(target), "scored": len(family), "known": len(known),
                     "enough": len(known) >= min_known})
    return rows


def format_checks(rows: list[dict]) -> str:
    """:func:`check_targets`'s rows as a text table."""
    lines = [f"{'target':32s} {'scored':>6s} {'known':>6s}  enough"]
    lines += [f"{r['target']:32s} {r['scored']:6d} {r['known']:6d}  {'yes' if r['enough'] else 'NO'}" for r in rows]
    return "\n".join(lines)

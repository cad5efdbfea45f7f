"""Comparisons without a model, on hand-made masks and WordNet targets whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from circuitcut.atlas import load
from circuitcut.atlas.compare import (
    containment, containments, distances, jaccard_by_site, jaccard_matrix, rank_correlation, seed_agreement,
)
from circuitcut.atlas.findings import seeds_markdown
from circuitcut.atlas.hierarchy import hierarchy_order, parents, wordnet_distance
from circuitcut.masks import Mask
from circuitcut.sites import ModelShape

SHAPE = ModelShape(name="toy", n_layers=2, d_model=4, d_mlp=10, n_heads=1, n_key_value_heads=1, d_head=4)


def _mask(**removed: list[int]) -> Mask:
    """A weight mask over two 2x5 matrices of layer 1 (``gate`` and ``out``) removing the given flat indices."""
    tensors = {}
    for part in ("gate", "out"):
        flat = torch.zeros(10, dtype=torch.bool)
        flat[removed.get(part, [])] = True
        tensors[f"blocks.1.mlp.{part}"] = flat.reshape(2, 5)
    return Mask(SHAPE, "weight", tensors)


def test_containment_and_its_chance_level():
    child, parent = _mask(gate=[0, 1], out=[3]), _mask(gate=[1, 2, 3], out=[3, 4])
    found = containment(child, parent)
    assert found == {"child_units": 3, "parent_units": 5, "shared": 2, "containment": 2 / 3, "chance": 5 / 20}
    assert containment(parent, parent)["containment"] == 1.0


def test_jaccard_by_site_counts_each_layer_and_matrix():
    frame = jaccard_by_site(_mask(gate=[0, 1], out=[3]), _mask(gate=[1, 2], out=[4]))
    gate = frame[frame.part == "mlp.gate"].iloc[0]
    assert (gate.layer, gate.units_a, gate.units_b, gate.shared, gate.jaccard) == (1, 2, 2, 1, 1 / 3)
    assert gate.chance == pytest.approx((2 * 2 / 10) / (4 - 2 * 2 / 10))
    assert frame[frame.part == "mlp.out"].iloc[0].jaccard == 0.0


@pytest.mark.parametrize(("a", "b", "steps"), [
    ("isa:animal.n.01", "isa:animal.n.01", 0),
    ("isa:bird.n.01", "isa:vertebrate.n.01", 1),      # a parent and its child
    ("isa:mammal.n.01", "isa:bird.n.01", 2),          # siblings under vertebrate
    ("isa:dog.n.01", "isa:animal.n.01", 2),           # through domestic animal, not the four steps through mammal
    ("animal", "isa:plant.n.02", 2),                  # siblings under organism; a lemma is its first sense
])
def test_wordnet_distance_is_the_path_through_the_nearest_common_hypernym(a, b, steps):
    assert wordnet_distance(a, b) == wordnet_distance(b, a) == steps


def test_a_target_that_is_no_synset_names_the_form_to_write():
    with pytest.raises(ValueError, match="write isa:SYNSET, e.g. isa:animal.n.01"):
        wordnet_distance("isa:no-such-thing", "isa:animal")


def test_parents_are_the_most_specific_target_above_and_the_order_keeps_families_together():
    targets = ["isa:dog.n.01", "isa:food.n.01", "isa:animal.n.01", "isa:beverage.n.01", "isa:mammal.n.01"]
    assert parents(targets) == {"isa:dog.n.01": "isa:mammal.n.01", "isa:food.n.01": None, "isa:animal.n.01": None,
                                "isa:beverage.n.01": "isa:food.n.01", "isa:mammal.n.01": "isa:animal.n.01"}
    assert hierarchy_order(targets) == ["isa:food.n.01", "isa:beverage.n.01", "isa:animal.n.01", "isa:mammal.n.01",
                                        "isa:dog.n.01"]


def test_rank_correlation_of_a_similarity_that_falls_with_distance():
    targets = ["isa:animal.n.01", "isa:mammal.n.01", "isa:dog.n.01", "isa:food.n.01", "isa:beverage.n.01"]
    dist = distances(targets)
    assert dist.loc["isa:mammal.n.01", "isa:dog.n.01"] == 4 and np.all(np.diag(dist) == 0)
    found = rank_correlation(1 / (1 + dist), dist, n_boot=200)
    assert found["rho"] == pytest.approx(-1.0) and found["high"] == pytest.approx(-1.0)
    assert (found["targets"], found["pairs"]) == (5, 20)
    # a similarity that ignores distance: rho near 0 and an interval that holds it
    noise = pd.DataFrame(np.random.default_rng(0).random((5, 5)), index=targets, columns=targets)
    unrelated = rank_correlation(noise, dist, n_boot=200)
    assert unrelated["low"] < unrelated["rho"] < unrelated["high"] and unrelated["low"] < 0 < unrelated["high"]


def test_comparisons_over_a_tiny_atlas(atlas_dir):
    atlas = load(atlas_dir)
    matrix = jaccard_matrix(atlas, granularity="neuron")
    assert list(matrix.index) == atlas.targets and np.allclose(np.diag(matrix), 1.0)
    a, b = (atlas.mask(t, "neuron") for t in ("isa:animal.n.01", "isa:food.n.01"))
    assert matrix.loc["isa:animal.n.01", "isa:food.n.01"] == a.jaccard(b)["overall"]
    found = containments(atlas, "neuron")
    assert list(found.child) == ["isa:mammal.n.01"] and list(found.parent) == ["isa:animal.n.01"]
    child = atlas.mask("isa:mammal.n.01", "neuron")
    assert found.iloc[0].shared == int(sum((child.removed[s] & a.removed[s]).sum() for s in a.removed))
    assert math.isclose(found.iloc[0].chance, a.n_removed() / a.n_units())


def test_seed_agreement_compares_one_family_under_two_seeds(atlas_dir):
    atlas = load(atlas_dir)
    frame = seed_agreement(atlas, "weight")
    assert list(frame.target) == ["isa:animal.n.01"]  # the only family with two seeds
    a, b = atlas.mask("animal.n.01", "weight", 0), atlas.mask("animal.n.01", "weight", 1)
    row = frame.iloc[0]
    shared = sum(int((m & b.removed[s]).sum()) for s, m in a.removed.items())
    assert (row.units_a, row.units_b, row.shared) == (a.n_removed(), b.n_removed(), shared)
    assert row.jaccard == pytest.approx(shared / (a.n_removed() + b.n_removed() - shared))
    assert row.dppl_b == atlas.run("animal.n.01", "weight", 1)["metrics"]["change"]["target"]["dppl"]
    assert seeds_markdown(frame).splitlines()[2].startswith(f"| isa:animal.n.01 | {a.n_removed():,} / ")
    assert seed_agreement(atlas, "neuron").empty and seeds_markdown(seed_agreement(atlas, "neuron")) == ""

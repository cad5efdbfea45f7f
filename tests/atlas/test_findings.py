"""The questions an atlas answers across targets: pair kinds from the hierarchy, and the findings' numbers."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from circuitcut.atlas.findings import Comparisons, findings, neuron_contexts, pair_kinds
from circuitcut.atlas.views import neuron_map
from circuitcut.masks import Mask
from circuitcut.sites import ModelShape

TARGETS = ["isa:animal.n.01", "isa:mammal.n.01", "isa:bird.n.01", "isa:dog.n.01", "isa:color.n.01"]


def test_pairs_are_nested_siblings_or_distant_by_the_hierarchy():
    kinds = pair_kinds(TARGETS)
    assert ("isa:mammal.n.01", "isa:dog.n.01") in kinds and ("isa:dog.n.01", "isa:mammal.n.01") not in kinds
    assert pair_kinds(TARGETS[::-1])["isa:animal.n.01", "isa:mammal.n.01"] == "nested"  # ancestor first, whatever the order
    assert kinds["isa:animal.n.01", "isa:dog.n.01"] == "nested"  # a grandchild, through mammal
    assert kinds["isa:mammal.n.01", "isa:bird.n.01"] == "siblings"
    assert kinds["isa:animal.n.01", "isa:color.n.01"] == "distant"
    assert ("isa:bird.n.01", "isa:dog.n.01") not in kinds  # cousins: neither nested, siblings nor distant


def _matrix(value) -> pd.DataFrame:
    return pd.DataFrame([[value(a, b) for b in TARGETS] for a in TARGETS], index=TARGETS, columns=TARGETS)


def test_findings_read_each_kind_of_pair_from_the_matrices(tmp_path):
    kinds = pair_kinds(TARGETS)
    level = {"nested": 0.3, "siblings": 0.2, "distant": 0.01}
    jaccard = _matrix(lambda a, b: 1.0 if a == b else level.get(kinds.get((a, b)) or kinds.get((b, a)), 0.1))
    cross = pd.DataFrame([{"removed": a, "scored": b, "dppl": 100 * jaccard.loc[a, b], "top10": 0.0,
                           "top10_original": 100.0, "dppl_random": 1.0} for a in TARGETS for b in TARGETS])
    containment = pd.DataFrame([{"child": "isa:mammal.n.01", "parent": "isa:animal.n.01", "child_units": 10,
                                 "parent_units": 20, "shared": 4, "containment": 0.4, "chance": 1e-6}])
    distance = _matrix(lambda a, b: 0.0 if a == b else 1.0 + 5 * (level.get(kinds.get((a, b)) or kinds.get((b, a)), 0.1) < 0.2))
    comparisons = Comparisons("weight", 0, jaccard, distance, containment, cross, pd.DataFrame())
    found = findings(comparisons, n_boot=200)
    assert found["jaccard_by_kind"]["siblings"]["mean"] == pytest.approx(0.2)
    assert found["jaccard_by_kind"]["distant"]["pairs"] == 4  # color with each of the others
    assert found["excess_by_kind"]["nested"]["mean"] == pytest.approx(29.0)
    assert found["containment_mean"] == pytest.approx(0.4)
    assert found["jaccard_vs_distance"]["rho"] < -0.5  # built so that the nearer share more
    comparisons.save(tmp_path)
    again = Comparisons.load(tmp_path)
    pd.testing.assert_frame_equal(again.excess(), comparisons.excess())


class _Atlas:
    """What neuron_contexts and neuron_map read of an atlas: targets' neuron masks (here, chosen neurons)."""

    def __init__(self, masks):
        self.masks = masks

    def target(self, target):
        return target

    def mask(self, target, granularity="neuron", seed=0):
        return self.masks[target]


def test_neuron_contexts_and_map_cover_every_masked_neuron(tiny_model):
    shape = ModelShape.of(tiny_model)

    def mask(neurons):
        removed = torch.zeros(shape.n_layers, shape.n_neurons("mlp"), dtype=torch.bool)
        for layer, n in neurons:
            removed[layer, n] = True
        return Mask.from_kinds(shape, {"mlp": removed})

    atlas = _Atlas({"isa:animal.n.01": mask([(1, 3), (1, 7)]), "isa:food.n.01": mask([(1, 7), (0, 2)])})
    contexts = neuron_contexts(tiny_model, atlas, list(atlas.masks), k=2, tokens=512)
    assert set(contexts) == {"blocks.1.mlp.hook_post:3", "blocks.1.mlp.hook_post:7", "blocks.0.mlp.hook_post:2"}
    assert all(len(c) == 2 and c[0].count("[") == 1 for c in contexts.values())  # the peak token marked
    frame = pd.DataFrame([[1.0, 0.3], [0.3, 1.0]], index=list(atlas.masks), columns=list(atlas.masks))
    comparisons = Comparisons("neuron", 0, frame, frame, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(),
                              contexts=contexts)
    figure = neuron_map(atlas, comparisons)
    assert [t.name for t in figure.data] == ["animal.n.01", "food.n.01"] and [len(t.x) for t in figure.data] == [2, 2]
    shared = next(text for text in figure.data[0].text if "neuron 7" in text)
    assert "also in: food.n.01" in shared and contexts["blocks.1.mlp.hook_post:7"][0].replace("<", "&lt;") in shared

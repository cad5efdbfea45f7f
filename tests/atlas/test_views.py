"""Each atlas view returns a figure with the traces it promises, in the hierarchy's order."""

from __future__ import annotations

import plotly.graph_objects as go

from circuitcut.atlas import load
from circuitcut.atlas.compare import jaccard_matrix
from circuitcut.atlas.views import anatomy_side_by_side, atlas_tree, pairwise_heatmap


def test_the_pairwise_heatmap_puts_children_after_their_parent(atlas_dir):
    matrix = jaccard_matrix(load(atlas_dir), granularity="neuron")
    fig = pairwise_heatmap(matrix, "Jaccard", value="Jaccard")
    assert isinstance(fig, go.Figure) and [type(t) for t in fig.data] == [go.Heatmap]
    assert list(fig.data[0].x) == ["animal.n.01", "· mammal.n.01", "food.n.01"]
    assert fig.data[0].z[0][1] == matrix.loc["isa:animal.n.01", "isa:mammal.n.01"]


def test_the_tree_nests_a_child_in_its_parent_with_its_numbers(atlas_dir):
    atlas = load(atlas_dir)
    fig = atlas_tree(atlas, granularity="neuron")
    (tree,) = fig.data
    assert isinstance(tree, go.Treemap)
    assert dict(zip(tree.ids, tree.parents)) == {"isa:animal.n.01": "", "isa:food.n.01": "",
                                                 "isa:mammal.n.01": "isa:animal.n.01"}
    units = atlas.run("isa:food.n.01", "neuron")["metrics"]["size"]["n_subnetwork"]
    assert tree.text[list(tree.ids).index("isa:food.n.01")].startswith(f"{units:,} units")


def test_anatomy_has_one_panel_per_target(atlas_dir):
    atlas = load(atlas_dir)
    fig = anatomy_side_by_side(atlas, ["isa:animal.n.01", "isa:food.n.01", "isa:mammal.n.01"], granularity="neuron")
    assert [type(t) for t in fig.data] == [go.Heatmap] * 3
    assert sum(t.showscale for t in fig.data) == 1
    food = atlas.mask("isa:food.n.01", "neuron")
    assert int(fig.data[1].z.sum()) == food.n_removed()
    weights = anatomy_side_by_side(atlas, ["isa:animal.n.01"], granularity="weight", seed=1)
    assert len(weights.data[0].x) == 7  # q k v o gate in out

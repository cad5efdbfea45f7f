"""Cross-criticality and mask algebra on the tiny atlas: a run scored on its own facts gives its stored figures."""

from __future__ import annotations

import pytest

from circuitcut.atlas import load
from circuitcut.atlas.functional import cross_criticality, fact_batch, union_effect, verify


def test_a_run_removed_and_scored_on_its_own_facts_gives_its_stored_targetkg_figures(atlas_dir, tiny_model):
    atlas = load(atlas_dir)
    frame = cross_criticality(tiny_model, atlas, granularity="neuron", random_seeds=2)
    assert len(frame) == 9 and set(frame.removed) == set(frame.scored) == set(atlas.targets)
    for target in atlas.targets:
        own = frame[(frame.removed == target) & (frame.scored == target)].iloc[0]
        metrics = atlas.run(target, "neuron")["metrics"]
        assert own.dppl == pytest.approx(metrics["change"]["target"]["dppl"], abs=1e-3)
        assert own.top10 == pytest.approx(metrics["remaining"]["target"]["top10"])
        assert own.top10_original == pytest.approx(metrics["original"]["target"]["top10"])
    assert frame.dppl_random.notna().all()


def test_the_union_of_two_masks_removes_what_each_removes(atlas_dir, tiny_model):
    atlas = load(atlas_dir)
    frame = union_effect(tiny_model, atlas, "isa:animal.n.01", "food.n.01", granularity="neuron")
    assert list(frame.removed.unique()) == ["isa:animal.n.01", "isa:food.n.01", "isa:animal.n.01 | isa:food.n.01"]
    alone = frame[frame.removed == "isa:animal.n.01"].set_index("scored").dppl
    union = frame[frame.removed == "isa:animal.n.01 | isa:food.n.01"].set_index("scored").dppl
    assert alone["isa:animal.n.01"] == pytest.approx(atlas.run("isa:animal.n.01", "neuron")["metrics"]["change"]["target"]["dppl"], abs=1e-3)
    assert union.index.tolist() == ["isa:animal.n.01", "isa:food.n.01"]


def test_facts_lines_parse_back_to_prompt_and_tail(tokenizer):
    batch = fact_batch(["A dog is a kind of| animal (rank 1, ppl 2.0)"], tokenizer)
    assert batch.prompts == ["A dog is a kind of"] and batch.continuations == [" animal"]
    with pytest.raises(ValueError, match="holds no target facts"):
        fact_batch([], tokenizer)


def test_verify_flags_a_stored_figure_the_model_does_not_reproduce(atlas_dir, tiny_model):
    atlas = load(atlas_dir)
    frame = verify(tiny_model, atlas, "isa:animal.n.01", "neuron")
    assert list(frame.dataset) == ["target", "control"] and frame.ok.all()  # the tiny runs list no control_new
    change = atlas.run("isa:animal.n.01", "neuron")["metrics"]["change"]
    change["control"]["dppl"] += 2 + 0.02 * abs(change["control"]["dppl"])  # a figure that is not the mask's
    frame = verify(tiny_model, atlas, "isa:animal.n.01", "neuron")
    assert frame.ok.tolist() == [True, False]

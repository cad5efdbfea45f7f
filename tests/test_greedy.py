"""Greedy selection: its first-order removal effects are real ones, and it finds the planted neuron."""

from __future__ import annotations

import torch

import circuitcut
from circuitcut.sites import ModelShape
from circuitcut.greedy import curve_point, greedy_masks, greedy_step, mean_nll, pushed_rows, removal_effects
from circuitcut.masks import Mask
from circuitcut.subnetwork.evaluation import evaluate_model
from subnetwork_helpers import NEURON, planted_data

SITE = "blocks.1.mlp.hook_post"


def test_removal_effects_rank_the_planted_neuron_first_for_the_target_only(planted_dir):
    model = circuitcut.load_model(str(planted_dir), device="cpu")
    data = planted_data()
    keep = {SITE: torch.ones(ModelShape.of(model).d_mlp)}
    target = removal_effects(model, keep, lambda k: mean_nll(model, k, data.target))[1][SITE]
    control = removal_effects(model, keep, lambda k: mean_nll(model, k, data.control))[1][SITE]
    assert target.argmax() == NEURON and target[NEURON] > 10 * target.abs().sort().values[-2]
    assert control[NEURON].abs() < 1e-3 * target[NEURON]  # the neuron is silent on the controls
    # the estimate has the sign and size of the real removal: the target's NLL rises by at least as much
    with torch.no_grad():
        before = data.target.tail_nll(model(data.target.tokens[:, :-1])).mean()
        mask = torch.zeros_like(keep[SITE], dtype=torch.bool)
        mask[NEURON] = True
        with Mask(ModelShape.of(model), "neuron", {SITE: mask}).remaining(model):
            after = data.target.tail_nll(model(data.target.tokens[:, :-1])).mean()
    assert after - before > 0.5 * target[NEURON] > 0


def test_greedy_step_removes_the_planted_neuron_and_random_neurons_do_not_suppress(planted_dir):
    model = circuitcut.load_model(str(planted_dir), device="cpu")
    data = planted_data()
    shape = ModelShape.of(model)
    empty = Mask(shape, "neuron", {SITE: torch.zeros(shape.d_mlp, dtype=torch.bool)})
    mask = greedy_step(model, empty, data, control_weight=10.0, per_step=1, suppress_rank=50)
    assert mask.removed[SITE].nonzero().flatten().tolist() == [NEURON]
    # the shortlist, each removed for real, picks it too, with or without text in the kept cost
    for lm_weight in (0.0, 1.0):
        real = greedy_step(model, empty, data, control_weight=10.0, per_step=1, suppress_rank=50, candidates=8,
                           lm_weight=lm_weight)
        assert torch.equal(real.removed[SITE], mask.removed[SITE])
    original = evaluate_model(model, data)
    point = curve_point(model, mask, data, original)
    assert point["neurons"] == 1 and point["target_top10"] == 0 and point["paraphrase_top10"] == 0
    assert abs(point["control_new_dppl"]) < 10
    rand = curve_point(model, mask.random_like(0), data, original)
    assert rand["target_top10"] == 100 and rand["target_dppl"] < 10
    # with the neuron removed every target row is out of the top 50: nothing is left to push, and a
    # further step still adds one neuron (chosen by the controls alone) instead of failing
    assert len(pushed_rows(model, mask.keep(), data.target, suppress_rank=50)) == 0
    after = greedy_step(model, mask, data, control_weight=10.0, per_step=1, suppress_rank=50, candidates=4)
    assert after.removed[SITE].sum() == 2 and after.removed[SITE][NEURON]


def test_greedy_masks_grow_by_per_step_over_the_configs_sites(planted_dir):
    from subnetwork_helpers import tiny_config

    model = circuitcut.load_model(str(planted_dir), device="cpu")
    config = tiny_config(layers=(1,), suppress_rank=50)
    masks = list(greedy_masks(model, config, planted_data(), control_weight=10.0, steps=2, per_step=1))
    assert [m.n_removed() for m in masks] == [1, 2] and set(masks[0].removed) == {SITE}
    assert masks[0].removed[SITE][NEURON] and (masks[0] - masks[1]).n_removed() == 0

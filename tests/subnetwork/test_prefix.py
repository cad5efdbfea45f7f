"""The frozen prefix: starting at the first masked layer gives the whole model's logits, losses and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from circuitcut.subnetwork import SubnetworkTrainer, find_subnetwork
from circuitcut.subnetwork.mask import remover
from circuitcut.subnetwork.objective import reference
from circuitcut.subnetwork.prefix import FrozenPrefix
from circuitcut.subnetwork.trainer import frozen
from subnetwork_helpers import tiny_config, tiny_data


def test_held_rows_start_at_the_layer_with_the_same_logits(tiny_model):
    tokens = torch.randint(0, 5000, (3, 12), generator=torch.Generator().manual_seed(0))
    tokens[1, 7:] = 0  # a padded row
    prefix = FrozenPrefix.of(tiny_model, 1, [tokens])
    with torch.no_grad():
        full = tiny_model(tokens)
        with prefix.active():
            cached = tiny_model(tokens)
            trimmed = tiny_model(tokens[1:2, :9])  # a sub-batch trimmed to less padding
            unknown = tiny_model(tokens[:, :5])  # rows never added run the whole model
    assert prefix.hits == 4 and prefix.misses == 1
    torch.testing.assert_close(cached, full, rtol=0, atol=1e-5)
    torch.testing.assert_close(trimmed, full[1:2, :9], rtol=0, atol=1e-5)
    torch.testing.assert_close(unknown, full[:, :5], rtol=0, atol=1e-5)
    assert "forward" not in tiny_model.__dict__  # the model is itself again outside
    assert all("forward" not in b.__dict__ for b in tiny_model.blocks)


def test_prefixes_nest_and_the_outer_one_is_back_after_the_inner(tiny_model):
    tokens = torch.randint(0, 5000, (2, 10), generator=torch.Generator().manual_seed(1))
    other = torch.randint(0, 5000, (2, 10), generator=torch.Generator().manual_seed(2))
    outer, inner = FrozenPrefix.of(tiny_model, 1, [tokens]), FrozenPrefix.of(tiny_model, 1, [other])
    with torch.no_grad():
        full = tiny_model(tokens), tiny_model(other)
        with outer.active():
            with inner.active():
                nested = tiny_model(tokens), tiny_model(other)  # the outer prefix serves what the inner lacks
            after = tiny_model(tokens)
    assert (outer.hits, inner.hits, inner.misses) == (4, 2, 1)
    for got, want in zip((*nested, after), (*full, full[0])):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert "forward" not in tiny_model.__dict__


def _one_step(model, config, data):
    """Loss terms and score gradients of the first training step, with the trainer's own data path."""
    trainer = SubnetworkTrainer(model, config, data)
    prefix = trainer.frozen_prefix()
    with frozen(model), prefix.active():
        ref = reference(model, data.control, data.lm, top_k=config.lm_top_k)
        with remover(model, config.granularity, {n: torch.ones_like(s) for n, s in trainer.scores.items()}) as masker:
            trainer.optimizer.step = trainer.optimizer.zero_grad = lambda **kw: None  # keep this step's gradients readable
            _, record = trainer._train_step(0, ref, masker)
    return prefix, record, [s.grad.clone() for s in trainer.scores.scores]


@pytest.mark.parametrize("granularity", ["weight", "neuron"])
def test_training_step_loss_and_gradients_equal_the_full_forward(tiny_model, granularity):
    data = tiny_data(tiny_model)
    config = tiny_config(granularity=granularity, init_p=0.4)  # a mask with units in it from step 0
    prefix, cached, cached_grads = _one_step(tiny_model, config, data)
    off, full, full_grads = _one_step(tiny_model, tiny_config(granularity=granularity, init_p=0.4, prefix_cache_mb=0), data)
    assert prefix.enabled and prefix.misses == 0 and prefix.hits > 0
    assert not off.enabled and off.hits == 0
    for term in ("suppression", "control_kg", "control_lm", "loss"):
        assert cached[term] == pytest.approx(full[term], abs=1e-5)
    assert any(g.abs().max() > 0 for g in full_grads)
    for a, b in zip(cached_grads, full_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_a_run_masking_layer_0_runs_the_whole_model(tiny_model):
    data = tiny_data(tiny_model)
    result = find_subnetwork(tiny_model, tiny_config(layers=(0, 1)), progress=False, data=data)
    assert result.metrics["prefix"] == {"layer": 0, "used": False, "megabytes": 0.0}
    assert math.isfinite(result.metrics["change"]["target"]["dppl"])


def test_a_budget_too_small_leaves_the_prefix_off(tiny_model):
    data = tiny_data(tiny_model)
    prefix = FrozenPrefix.of(tiny_model, 1, data.sequences(), budget_mb=1e-4)
    assert not prefix.enabled and prefix.megabytes == 0
    assert FrozenPrefix.of(tiny_model, 1, data.sequences()).megabytes > 0


def test_a_row_is_only_served_from_a_held_row_it_is_the_start_of(tiny_model):
    """A held row answers its own key and, for trimmed fact batches, its unpadded part less its last token;
    a row that only shares such a key (here: the repeated token runs on) runs the whole model."""
    held = torch.tensor([[5, 7, 7, 9, 0, 0]])
    prefix = FrozenPrefix.of(tiny_model, 1, [held])
    asked = {"trimmed": torch.tensor([[5, 7, 7]]), "padded": torch.tensor([[5, 7, 7, 9, 0, 0, 0]]),
             "runs on": torch.tensor([[5, 7, 7, 7, 7]]), "shorter": torch.tensor([[5, 7, 7, 9, 0]])}
    with torch.no_grad():
        for name, tokens in asked.items():
            with prefix.active():
                served = tiny_model(tokens)
            torch.testing.assert_close(served, tiny_model(tokens), rtol=0, atol=1e-5, msg=name)
    assert (prefix.hits, prefix.misses) == (2, 2)  # trimmed and shorter served; padded (longer) and runs-on not

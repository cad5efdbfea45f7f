"""The trainer: only scores move, the history logs what decides a run, resume equals an uninterrupted run."""

from __future__ import annotations

import pytest
import torch

from circuitcut.subnetwork import SubnetworkTrainer
from circuitcut.subnetwork.parametrize import logit
from subnetwork_helpers import tiny_config, tiny_data, weights


@pytest.mark.parametrize("granularity", ["weight", "neuron"])
def test_training_moves_scores_never_weights(tiny_model, granularity):
    before = weights(tiny_model)
    flags = {n: p.requires_grad for n, p in tiny_model.named_parameters()}
    trainer = SubnetworkTrainer(tiny_model, tiny_config(granularity=granularity), tiny_data(tiny_model))
    trainer.train(progress=False)
    assert all(torch.equal(before[n], p) for n, p in tiny_model.named_parameters())
    assert {n: p.requires_grad for n, p in tiny_model.named_parameters()} == flags
    assert all(p.grad is None for p in tiny_model.parameters())
    assert any((s != logit(0.03)).any() for s in trainer.scores.scores)
    history = trainer.history
    assert [r["step"] for r in history] == [0, 1, 2, 3]
    assert {"suppression", "control_kg", "control_lm", "sparsity_loss", "sparsity", "loss", "noise", "lr", "target_top10", "sampled",
            "snr_median", "pull_median", "push_median", "push_max", "push_noise", "above", "gap"} <= set(history[1])
    assert "flips" in history[2] and "flips" not in history[0]
    assert history[0]["noise"] == 1.0 and history[-1]["noise"] == 0.0  # noise_decay 0.5 of 4 steps
    assert [v.step for v in trainer.selector.records] == [2, 4]


def test_resume_equals_uninterrupted(tiny_model, tmp_path):
    config, data = tiny_config(), tiny_data(tiny_model)
    full = SubnetworkTrainer(tiny_model, config, data)
    full.train(progress=False)

    class Stop(Exception):
        pass

    def stop_at_2(step, record):
        if step == 2:  # the checkpoint after 2 steps is on disk; step 2 is lost
            raise Stop

    with pytest.raises(Stop):
        SubnetworkTrainer(tiny_model, config, data, tmp_path / "ck.pt").train(progress=False, on_step=stop_at_2)
    resumed = SubnetworkTrainer(tiny_model, config, data, tmp_path / "ck.pt")
    assert resumed.step == 2 and len(resumed.selector.records) == 1
    first_start = resumed.seconds  # the first start's training time comes back with its steps
    assert first_start > 0
    resumed.train(progress=False)
    assert resumed.seconds > first_start
    assert all(torch.equal(a, b) for a, b in zip(full.scores.scores, resumed.scores.scores))
    assert resumed.history == full.history
    assert resumed.selector.records == full.selector.records
    assert all(torch.equal(full.final_mask()[n], m) for n, m in resumed.final_mask().items())
    with pytest.raises(ValueError, match=r"another config \(lr: saved 0.1, asked 0.2\)"):
        SubnetworkTrainer(tiny_model, tiny_config(lr=0.2), data, tmp_path / "ck.pt")


def test_bad_data_is_refused_before_training(tiny_model):
    data = tiny_data(tiny_model)
    data.target = data.target[[]]
    with pytest.raises(ValueError, match="TargetKG is empty"):
        SubnetworkTrainer(tiny_model, tiny_config(), data)
    from subnetwork_helpers import CONTROL, TARGET

    with pytest.raises(ValueError, match="both TargetKG and ControlKG"):
        SubnetworkTrainer(tiny_model, tiny_config(), tiny_data(tiny_model, control=CONTROL + TARGET[:1]))


def test_without_validation_data_the_last_mask_is_final(tiny_model):
    data = tiny_data(tiny_model)
    data.val_kg, data.val_lm = {}, None
    trainer = SubnetworkTrainer(tiny_model, tiny_config(), data)
    trainer.train(progress=False)
    assert not trainer.selector.enabled and trainer.selector.records == []
    assert all(torch.equal(m, trainer.scores.hard()[n]) for n, m in trainer.final_mask().items())
    assert trainer.selector.summary()["validated"] is False


def test_early_stop_ends_training_once_the_rule_holds_and_the_mask_settles(tiny_model, tmp_path):
    """On the tiny model the rule holds from the first validation (no known target rows, an empty mask), so
    with two validations in a row required the run stops at the second, saved, and stays stopped."""
    config, data = tiny_config(steps=20, validate_every=2, checkpoint_every=10, early_stop=2), tiny_data(tiny_model)
    trainer = SubnetworkTrainer(tiny_model, config, data, tmp_path / "ck.pt")
    trainer.train(progress=False)
    records = trainer.selector.records
    assert trainer.stopped and trainer.step == 4 and [r.step for r in records] == [2, 4]
    assert records[0].changed is None and records[1].changed == 0 and all(r.excess == 0 for r in records)
    again = SubnetworkTrainer(tiny_model, config, data, tmp_path / "ck.pt")  # the stop was checkpointed
    assert again.stopped and again.step == 4
    again.train(progress=False)
    assert again.step == 4

    never = SubnetworkTrainer(tiny_model, tiny_config(steps=6, validate_every=2, early_stop=None), data)
    never.train(progress=False)
    assert not never.stopped and never.step == 6

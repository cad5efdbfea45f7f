"""The method works where the answer is known: a neuron planted to carry one fact is found, alone.

The planted model (``planted_dir``, built by ``subnetwork_helpers.write_planted_model``) is the tiny
Llama with one feed-forward neuron of layer 1 wired to fire only on token ``A`` and to write token
``T``. Prompts that end in ``A`` then predict ``T`` (the TargetKG facts); control
facts and text never wake the neuron. A learned mask must remove that neuron and (nearly) nothing
else; random masks of the same size must not suppress the facts; with the suppression term off
(no signal) nothing may enter the subnetwork at all. A weight mask over ``mlp.out`` must take its weights
from the planted neuron's column only.
"""

from __future__ import annotations

import torch

import circuitcut
from circuitcut.subnetwork import SubnetworkConfig, find_subnetwork
from subnetwork_helpers import NEURON, T, planted_data


def planted_config(**kw) -> SubnetworkConfig:
    base = dict(layers=(1,), neuron_kinds=("mlp",), steps=60, lr=0.3, sparsity_start=0.1, sparsity_end=0.2, window=16, lm_pool_tokens=128, lm_batch=4,
                control_batch=8, lm_top_k=16, validate_every=10, log_every=5, random_seeds=3)
    return SubnetworkConfig(**{**base, **kw})


def test_the_planted_neuron_carries_the_facts(planted_dir):
    model = circuitcut.load_model(str(planted_dir), device="cpu")
    data = planted_data()
    with torch.no_grad():
        logits = model(data.target.tokens)[:, -2]
        control = model(data.control.tokens)[:, -2]
    assert (logits.argmax(-1) == T).all()  # the model "knows" every target fact...
    assert (control.argmax(-1) != T).all()  # ...and T is not what it predicts elsewhere


def test_learned_mask_finds_the_planted_neuron_and_random_masks_do_not(planted_dir, tmp_path):
    model = circuitcut.load_model(str(planted_dir), device="cpu")
    result = find_subnetwork(model, planted_config(), tmp_path / "run", progress=False, data=planted_data())
    found = result.mask.removed["blocks.1.mlp.hook_post"].nonzero().flatten().tolist()
    assert NEURON in found and len(found) <= 2, found
    m = result.metrics
    assert m["remaining"]["target"]["top10"] == 0 and m["remaining"]["target_paraphrase"]["top10"] == 0
    assert m["original"]["target"]["top10"] == 100
    # random masks of the same size leave the facts alone; the learned one leaves the controls alone
    crit = m["criticality"]
    assert crit["target"]["excess"] > 1000 and crit["target_paraphrase"]["excess"] > 1000
    assert all(abs(m["change"][name]["dppl"]) < 10 for name in ("control", "control_new", "lm"))
    assert m["selection"]["rule_met"]
    assert result.history[-1]["gap"] == 0  # trained on the mask that is evaluated
    # the diagnostics see it too: one unit pushes harder than the sparsity weight holds back, the rest do not
    early = result.history[1]
    assert early["push_median"] < early["sparsity_weight"] < early["push_max"] and early["above"] == 1


def test_no_signal_puts_nothing_in_the_subnetwork(planted_dir, tmp_path):
    """The no-signal control: without the suppression term, noise and maintenance alone recruit no unit."""
    model = circuitcut.load_model(str(planted_dir), device="cpu")
    result = find_subnetwork(model, planted_config(suppression_weight=0.0), tmp_path / "run", progress=False,
                             data=planted_data())
    assert result.mask.n_removed() == 0
    assert max(h["sampled"] for h in result.history) > 0  # the noise did sample units into training masks


def test_weight_mask_finds_the_planted_neurons_output_weights(planted_dir, tmp_path):
    """At weight granularity the answer is known too: only the planted neuron's column of mlp.out writes T."""
    model = circuitcut.load_model(str(planted_dir), device="cpu")
    config = planted_config(granularity="weight", matrices=("mlp.out",), sparsity_start=0.015,
                            sparsity_end=0.03)
    result = find_subnetwork(model, config, tmp_path / "run", progress=False, data=planted_data())
    found = result.mask.removed["blocks.1.mlp.out"]
    m = result.metrics
    assert found.any() and found.nonzero()[:, 1].unique().tolist() == [NEURON]
    # the trained facts are all gone; of the six held-out ones, at most two keep T in the top 10
    assert m["remaining"]["target"]["top10"] == 0 and m["remaining"]["target_paraphrase"]["top10"] < 50
    assert m["criticality"]["target"]["excess"] > 1000  # random weights of the same count leave the facts alone
    assert all(abs(m["change"][name]["dppl"]) < 10 for name in ("control", "control_new", "lm"))

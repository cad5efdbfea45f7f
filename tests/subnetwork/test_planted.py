"""The method works where the answer is known: a neuron planted to carry one fact is found, alone.

The planted model is the tiny Llama with one feed-forward neuron of layer 1 wired to fire only on
token ``A`` and to write token ``T``; nothing else in the model reads or writes those two
directions, so the neuron is silent everywhere else and nothing else predicts ``T``. Prompts that end in ``A`` then predict ``T`` (the TargetKG facts); control
facts and text never wake the neuron. A learned mask must remove that neuron and (nearly) nothing
else; random masks of the same size must not suppress the facts; with the suppression term off
(no signal) nothing may enter the subnetwork at all. A weight mask over ``mlp.out`` must take its weights
from the planted neuron's column only.
"""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaForCausalLM

import circuitcut
from circuitcut.data.kg import collate
from circuitcut.subnetwork import SubnetworkConfig, SubnetworkData, find_subnetwork

A, T, NEURON = 100, 200, 7


@pytest.fixture(scope="module")
def planted_dir(tiny_model_dir, tmp_path_factory):
    hf = LlamaForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        emb = hf.model.embed_tokens.weight  # tied with the unembedding
        a = emb[A] / emb[A].norm()
        t = torch.randn(emb.shape[1], generator=torch.Generator().manual_seed(1))
        t -= (t @ a) * a
        t /= t.norm()
        # Nothing but A's embedding and the planted neuron writes along a or t into the residual
        # stream, so the neuron is silent off A, and T's logit is zero wherever the neuron is.
        away = torch.eye(emb.shape[1]) - torch.outer(a, a) - torch.outer(t, t)
        emb.copy_(emb @ away)
        emb[A], emb[T] = 0.16 * a, 3.0 * t
        for layer in hf.model.layers:
            layer.self_attn.o_proj.weight.copy_(away @ layer.self_attn.o_proj.weight)
            layer.mlp.down_proj.weight.copy_(away @ layer.mlp.down_proj.weight)
        mlp = hf.model.layers[1].mlp
        mlp.gate_proj.weight[NEURON] = 4.0 * a  # gate and up read A's direction: silu(32) * 8 on A, 0 elsewhere
        mlp.up_proj.weight[NEURON] = a
        # small enough that the neuron does not swamp the residual: RMSNorm keeps its gradient alive
        mlp.down_proj.weight[:, NEURON] = 0.001 * t
    folder = tmp_path_factory.mktemp("planted")
    hf.save_pretrained(folder)
    for f in tiny_model_dir.glob("*token*"):
        (folder / f.name).write_bytes(f.read_bytes())
    return folder


def _facts(prefixes: torch.Tensor, last: list[int], tails: list[int]):
    return collate([(p.tolist() + [x], [y]) for p, x, y in zip(prefixes, last, tails)])


def planted_data() -> SubnetworkData:
    gen = torch.Generator().manual_seed(0)
    prefix = lambda n: torch.randint(1000, 5000, (n, 5), generator=gen)  # noqa: E731
    target, val_target, test_target = (_facts(prefix(6), [A] * 6, [T] * 6) for _ in range(3))
    control_last, control_tail = list(range(300, 316)), list(range(400, 416))
    control = _facts(prefix(16), control_last, control_tail)
    val_control = _facts(prefix(8), control_last[:8], control_tail[:8])
    new_control = _facts(prefix(8), control_last[8:], control_tail[8:])
    lm = torch.randint(1000, 5000, (12, 16), generator=gen)
    return SubnetworkData(
        target=target, control=control, lm=lm[:8],
        val_kg={"target": val_target, "control": val_control}, val_lm=lm[8:10],
        eval_kg={"target": target, "target_paraphrase": test_target, "control": control, "control_new": new_control},
        eval_lm=lm[10:],
    )


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
    found = result.mask.subnetwork["blocks.1.mlp.hook_post"].nonzero().flatten().tolist()
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
    assert result.mask.n_subnetwork() == 0
    assert max(h["sampled"] for h in result.history) > 0  # the noise did sample units into training masks


def test_weight_mask_finds_the_planted_neurons_output_weights(planted_dir, tmp_path):
    """At weight granularity the answer is known too: only the planted neuron's column of mlp.out writes T."""
    model = circuitcut.load_model(str(planted_dir), device="cpu")
    config = planted_config(granularity="weight", matrices=("mlp.out",), sparsity_start=0.015,
                            sparsity_end=0.03)
    result = find_subnetwork(model, config, tmp_path / "run", progress=False, data=planted_data())
    found = result.mask.subnetwork["blocks.1.mlp.out"]
    m = result.metrics
    assert found.any() and found.nonzero()[:, 1].unique().tolist() == [NEURON]
    # the trained facts are all gone; of the six held-out ones, at most two keep T in the top 10
    assert m["remaining"]["target"]["top10"] == 0 and m["remaining"]["target_paraphrase"]["top10"] < 50
    assert m["criticality"]["target"]["excess"] > 1000  # random weights of the same count leave the facts alone
    assert all(abs(m["change"][name]["dppl"]) < 10 for name in ("control", "control_new", "lm"))

"""Tiny data and configs shared by the subnetwork tests (and the distributed test): real IsA prompts, and
the planted model, where one feed-forward neuron carries one fact."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from circuitcut.data import kg
from circuitcut.data.kg import Triplet, collate
from circuitcut.subnetwork import SubnetworkConfig, SubnetworkData

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One thread: the tiny model's matrices are too small to share, and on a busy 2-core machine
    two spinning OpenMP threads made these tests 6x slower (a conftest imports it to use it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TARGET = [("dog", "animal"), ("cat", "animal"), ("horse", "animal"), ("cow", "animal")]
CONTROL = [("rose", "flower"), ("oak", "tree"), ("car", "vehicle"), ("apple", "fruit"), ("hammer", "tool"), ("piano", "instrument")]


def isa_batch(model, pairs, template="isa_kind"):
    return kg.encode(model.tokenizer, [Triplet(h, "IsA", t) for h, t in pairs], template=template)


def tiny_data(model, control=CONTROL) -> SubnetworkData:
    target = isa_batch(model, TARGET)
    ctrl = isa_batch(model, control)
    lm = torch.randint(0, 5000, (6, 16), generator=torch.Generator().manual_seed(0))
    return SubnetworkData(
        target=target,
        control=ctrl,
        lm=lm,
        eval_kg={"target": target, "target_paraphrase": isa_batch(model, TARGET, "isa_type"), "control": ctrl},
        eval_lm=lm[:2],
        val_kg={"target": isa_batch(model, TARGET, "isa_article"), "control": isa_batch(model, control[:3], "isa_article")},
        val_lm=lm[2:4],
    )


def tiny_config(**kw) -> SubnetworkConfig:
    base = dict(steps=4, window=16, lm_pool_tokens=96, lm_batch=2, control_batch=4, lm_top_k=8, log_every=1,
                checkpoint_every=2, validate_every=2, random_seeds=2, layers=(1,))
    return SubnetworkConfig(**{**base, **kw})


def weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


A, T, NEURON = 100, 200, 7
"""The planted model: feed-forward neuron ``NEURON`` of layer 1 fires only on token ``A`` and writes token ``T``."""


def write_planted_model(tiny_model_dir: Path, folder: Path) -> Path:
    """The tiny Llama with one neuron wired to carry the fact "A -> T", saved in ``folder``.

    Nothing else in the model reads or writes the two directions, so the neuron is silent off
    ``A`` and nothing else predicts ``T``.
    """
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
    hf.save_pretrained(folder)
    for f in tiny_model_dir.glob("*token*"):
        (folder / f.name).write_bytes(f.read_bytes())
    return folder


def _facts(prefixes: torch.Tensor, last: list[int], tails: list[int]):
    return collate([(p.tolist() + [x], [y]) for p, x, y in zip(prefixes, last, tails)])


def planted_data() -> SubnetworkData:
    """Facts ending in ``A`` (tail ``T``) to suppress; control facts and text that never wake the neuron."""
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

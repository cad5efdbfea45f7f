"""The planted pruning cases shared by the pruning, CUDA and distributed tests: token windows whose forget and
retain halves use disjoint token ranges, and a feed-forward neuron wired to fire on forget tokens only; and an
attention head wired to carry a forget corpus of one repeated token."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from circuitcut.pruning import PruningData

FORGET_TOKENS, RETAIN_TOKENS = (0, 400), (400, 800)
U = 5  # residual dimension that only forget tokens write


def windows(lo, hi, seed, n=8, pos=16):
    return torch.randint(lo, hi, (n, pos), generator=torch.Generator().manual_seed(seed))


def planted_data() -> PruningData:
    return PruningData(
        forget_stats=windows(*FORGET_TOKENS, 0),
        retain_stats=windows(*RETAIN_TOKENS, 1),
        forget_eval=windows(*FORGET_TOKENS, 2),
        retain_eval=windows(*RETAIN_TOKENS, 3),
    )


def plant_forget_neuron(model, layer=0, neuron=17):
    """Make one feed-forward neuron fire on forget tokens only.

    Forget tokens write +3 into residual dimension U, retain tokens 0; attention cannot write U,
    and only that neuron reads it, so on retain data its activation is exactly 0.
    """
    hf = model.original_model
    with torch.no_grad():
        embed = hf.model.embed_tokens.weight
        embed[:, U] = 0
        embed[FORGET_TOKENS[0] : FORGET_TOKENS[1], U] = 3.0
        for block in hf.model.layers:
            block.self_attn.o_proj.weight[U, :] = 0
            block.mlp.gate_proj.weight[:, U] = 0
            block.mlp.up_proj.weight[:, U] = 0
        mlp = hf.model.layers[layer].mlp
        mlp.gate_proj.weight[neuron] = 0
        mlp.up_proj.weight[neuron] = 0
        mlp.gate_proj.weight[neuron, U] = 20.0
        mlp.up_proj.weight[neuron, U] = 20.0
    return layer, neuron


F, G, HEAD = 7, 1000, 1
"""The planted head: attention head ``HEAD`` of layer 0 of :func:`write_mha_model`'s model reads only token ``F``
and makes the model predict ``F``, which without it predicts ``G`` (a token in no window) after ``F``."""


def write_mha_model(tiny_model_dir: Path, folder: Path) -> Path:
    """The tiny Llama with one key/value head per query head, so that a head's pre-out neurons are its own."""
    config = LlamaConfig.from_pretrained(tiny_model_dir)
    config.num_key_value_heads = config.num_attention_heads
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    for f in tiny_model_dir.glob("*token*"):
        (folder / f.name).write_bytes(f.read_bytes())
    return folder


def forget_head_data() -> PruningData:
    """Forget windows repeat token ``F``; retain windows are random tokens of the retain range."""
    forget = torch.full((8, 16), F)
    return PruningData(forget_stats=forget, retain_stats=windows(*RETAIN_TOKENS, 1),
                       forget_eval=forget.clone(), retain_eval=windows(*RETAIN_TOKENS, 3))


def plant_forget_head(model, layer=0, head=HEAD):
    """Make one attention head carry the forget corpus: the model predicts ``F`` after ``F`` through it alone.

    Residual dimension U is written by ``F``'s embedding (3) and ``G``'s (6) only, dimension U + 1 by ``F``'s (1)
    only; with tied embeddings ``F`` alone predicts ``G`` (logits 18 against 10). The head's values read U
    alone, so its pre-out neurons are exactly 0 on retain tokens, and its output writes U + 1, which makes
    ``F`` win.
    """
    hf = model.original_model
    d_head = model.cfg.d_head
    rows = slice(head * d_head, (head + 1) * d_head)
    with torch.no_grad():
        embed = hf.model.embed_tokens.weight
        embed[:, U : U + 2] = 0
        embed[F] = 0
        embed[F, U], embed[F, U + 1] = 3.0, 1.0
        embed[G] = 0
        embed[G, U] = 6.0
        attn = hf.model.layers[layer].self_attn
        attn.v_proj.weight[rows] = 0
        attn.v_proj.weight[rows, U] = 1.0
        attn.o_proj.weight[:, rows] = 0
        attn.o_proj.weight[U + 1, rows] = 1.0
    return layer, head

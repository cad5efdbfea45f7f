"""The planted pruning case shared by the pruning, CUDA and distributed tests: token windows whose forget and
retain halves use disjoint token ranges, and a feed-forward neuron wired to fire on forget tokens only."""

from __future__ import annotations

import torch

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

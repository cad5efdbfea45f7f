"""Tiny data and configs shared by the subnetwork tests (and the distributed test): real IsA prompts."""

from __future__ import annotations

import torch

from circuitcut.data import kg
from circuitcut.data.kg import Triplet
from circuitcut.subnetwork import SubnetworkConfig, SubnetworkData

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

"""SubnetworkConfig: validation whose errors name the fix, presets, sites."""

from __future__ import annotations

import pytest

from circuitcut.runs import differing_settings
from circuitcut.subnetwork import PRESETS, SubnetworkConfig, preset


def test_bad_settings_are_refused_clearly(tiny_model):
    cases = {
        "granularity must be one of": dict(granularity="head"),
        "steps must be positive": dict(steps=0),
        "init_p": dict(init_p=1.0),
        "matrices": dict(matrices=("mlp.up",)),
        "Unknown site kind": dict(neuron_kinds=("heads",)),
        "suppression must be one of": dict(suppression="zero"),
        "sparsity must be one of": dict(sparsity="l1"),
        "lr_schedule must be one of": dict(lr_schedule="step"),
        "named_tails must be one of": dict(named_tails="filter"),
        "target_templates must be one of": dict(target_templates="all"),
        "suppress_rank must be >= 1": dict(suppress_rank=0),
        "noise_decay is a fraction": dict(noise_decay=2.0),
        "max_lm_dppl must be >= 0": dict(max_lm_dppl=-1.0),
    }
    for message, kwargs in cases.items():
        with pytest.raises(ValueError, match=message):
            SubnetworkConfig(**kwargs)
    with pytest.raises(ValueError, match="do not exist"):
        SubnetworkConfig(layers=(5,)).sites(tiny_model)
    with pytest.raises(ValueError, match=r"Unknown SubnetworkConfig fields: \['stepz'\]"):
        SubnetworkConfig.from_dict({"stepz": 3})


def test_later_data_options_change_the_kg_key_only_away_from_their_defaults():
    """Folders made before ``named_tails`` and ``target_templates`` existed keep their scored facts."""
    default = SubnetworkConfig().kg_key()
    assert "named_tails" not in default and "target_templates" not in default
    assert SubnetworkConfig(named_tails="drop").kg_key() == {**default, "named_tails": "drop"}
    assert SubnetworkConfig(target_templates="train").kg_key() == {**default, "target_templates": "train"}


def test_presets_and_sites(tiny_model):
    paper = preset("paper", target="isa:food")
    assert (paper.init_p, paper.lr, paper.sparsity, paper.suppression, paper.suppress_rank) == (0.45, 0.2, "mean", "uniform", None)
    assert paper.target == "isa:food" and paper.noise_end == paper.noise_start == 1.0
    assert preset("default") == SubnetworkConfig() and set(PRESETS) >= {"default", "paper"}
    with pytest.raises(ValueError, match="Unknown preset 'papr': choose from default, paper"):
        preset("papr")
    assert f"lr: saved 0.2, asked {SubnetworkConfig().lr}" in differing_settings(
        paper.to_dict(), SubnetworkConfig(target="isa:food").to_dict())

    assert (preset("weights").granularity, preset("weights").units) == ("weight", "weights of all matrices")
    assert SubnetworkConfig(granularity="weight", matrices=("mlp.out",)).units == "weights of mlp.out"
    assert SubnetworkConfig(neuron_kinds=("mlp", "attn_v")).units == "mlp+attn_v neurons"

    sites = SubnetworkConfig(granularity="weight").sites(tiny_model)
    assert set(sites) == {f"blocks.1.{m}" for m in ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.in", "mlp.out")}
    assert sites["blocks.1.mlp.out"] == (64, 96)
    assert SubnetworkConfig().sites(tiny_model) == {"blocks.1.mlp.hook_post": (96,)}
    assert SubnetworkConfig(neuron_kinds=("mlp", "attn_v")).sites(tiny_model) == {
        "blocks.1.mlp.hook_post": (96,), "blocks.1.attn.hook_v": (32,)}

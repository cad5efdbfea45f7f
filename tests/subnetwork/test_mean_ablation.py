"""scripts/mean_ablation.py: its removal with zeros is the subnetwork mask's own, with means it keeps the average."""

from __future__ import annotations

import torch

from circuitcut.sites import ModelShape
from circuitcut.masks import Mask
from mean_ablation import mean_activations, replacing

SITE = "blocks.1.mlp.hook_post"


def test_zero_and_mean_ablation_of_a_neuron_subnetwork(tiny_model):
    mask = torch.zeros(96, dtype=torch.bool)
    mask[[3, 40, 77]] = True
    subnetwork = Mask(ModelShape.of(tiny_model), "neuron", {SITE: mask})
    windows = torch.randint(0, 1000, (3, 12))
    with torch.inference_mode():
        _, cache = tiny_model.run_with_cache(windows, names_filter=SITE)
        means = mean_activations(tiny_model, [SITE], windows, batch_size=2)
        assert torch.allclose(means[SITE], cache[SITE].float().mean((0, 1)), atol=1e-5)

        with subnetwork.remaining(tiny_model):
            removed = tiny_model(windows)
        with tiny_model.hooks(fwd_hooks=replacing({SITE: mask}, {SITE: torch.zeros(96)})):
            assert torch.allclose(tiny_model(windows), removed, atol=1e-5)

        (name, hook), = replacing({SITE: mask}, means)
        act = cache[SITE]
        out = hook(act, None)
        assert torch.allclose(out[..., mask], means[SITE][mask].expand_as(out[..., mask]))
        assert torch.equal(out[..., ~mask], act[..., ~mask])

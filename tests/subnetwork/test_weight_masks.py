"""Weight masks: a training step's shared product ``W * keep`` gives the gradient of one product per forward."""

from __future__ import annotations

import torch

from circuitcut.subnetwork.trainer import frozen
from circuitcut.weight_masks import WeightRemover, weight_sites


def _two_passes(model, tokens):
    """Two forward and backward passes (as a training step's loss terms), their summed loss."""
    total = 0.0
    for rows in (tokens[:1], tokens[1:]):
        loss = model(rows).float().logsumexp(-1).mean()
        loss.backward()
        total += float(loss.detach())
    return total


def test_the_shared_product_gives_each_forwards_gradient_on_keep(tiny_model):
    sites = weight_sites(tiny_model, [1], ("attn.v", "mlp.out"))
    gen = torch.Generator().manual_seed(0)
    keep = {n: (torch.rand(shape, generator=gen) > 0.3).float() for n, shape in sites.items()}
    tokens = torch.randint(0, 5000, (2, 10), generator=gen)

    per_forward = {n: k.clone().requires_grad_() for n, k in keep.items()}
    with frozen(tiny_model), WeightRemover(tiny_model, per_forward):  # keep given at creation: W * keep in each forward
        expected_loss = _two_passes(tiny_model, tokens)
    with frozen(tiny_model), WeightRemover(tiny_model, {n: torch.ones_like(k) for n, k in keep.items()}) as remover:
        remover.start_step({n: k.clone() for n, k in keep.items()})
        loss = _two_passes(tiny_model, tokens)
        grads = remover.end_step()
        after = tiny_model(tokens[:1])
    with torch.no_grad():
        original = tiny_model(tokens[:1])
    torch.testing.assert_close(after, original, rtol=0, atol=0)  # after the step every weight is kept
    assert loss == expected_loss
    assert set(grads) == set(sites) and all(g.abs().max() > 0 for g in grads.values())
    for n in sites:
        torch.testing.assert_close(grads[n], per_forward[n].grad, rtol=1e-5, atol=1e-6)

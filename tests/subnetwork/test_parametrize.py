"""Mask scores: the straight-through sample, its noise scale, and the sparsity penalty per unit."""

from __future__ import annotations

import math

import pytest
import torch

from circuitcut.subnetwork.parametrize import MaskScores, gumbel_sigmoid, logit


def test_straight_through_mask_is_hard_and_passes_gradient():
    scores = torch.full((1000,), logit(0.45), requires_grad=True)
    m = gumbel_sigmoid(scores, generator=torch.Generator().manual_seed(0))
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    assert 0.35 < m.mean().item() < 0.55  # P(m = 1) = sigmoid(score) = 0.45 at noise 1
    (m * torch.arange(1.0, 1001.0)).sum().backward()
    assert scores.grad is not None and (scores.grad != 0).all()

    module = MaskScores({"a": (3, 4), "b": (5,)}, init_p=0.45)
    assert torch.allclose(module.scores[0], torch.full((3, 4), math.log(0.45 / 0.55)))
    with torch.no_grad():
        module.scores[1].copy_(torch.tensor([-2.0, 2.0, -0.1, 0.1, 3.0]))
    hard = module.hard()  # deterministic: the same every call, threshold sigmoid > 0.5
    assert hard["b"].tolist() == [False, True, False, True, True] and not hard["a"].any()
    assert module.hard()["b"].equal(hard["b"])


def test_noise_scale_moves_the_training_mask_to_the_evaluation_mask():
    scores = torch.linspace(-3, 3, 2001)
    gen = torch.Generator().manual_seed(0)
    # at noise 0 the sample is the evaluation mask whatever the temperature
    for temperature in (0.5, 1.0, 2.0):
        sample = gumbel_sigmoid(scores, temperature=temperature, noise=0.0, generator=gen)
        assert torch.equal(sample.bool(), scores > 0)
    # at noise 1 a unit is in the sample with probability sigmoid(score); smaller noise sharpens it
    many = torch.full((20000,), logit(0.1))
    assert abs(gumbel_sigmoid(many, noise=1.0, generator=gen).mean().item() - 0.1) < 0.01
    assert abs(gumbel_sigmoid(many, noise=0.5, generator=gen).mean().item() - torch.sigmoid(many[0] / 0.5).item()) < 0.01


def test_per_unit_penalty_pulls_each_unit_the_same_whatever_the_number_of_units():
    grads = {}
    for n in (100, 100_000):
        for mode in ("per_unit", "mean"):
            module = MaskScores({"a": (n,)}, init_p=0.2)
            module.penalty(mode).backward()
            grads[n, mode] = module.scores[0].grad[0].item()
    expected = 0.2 * 0.8  # d sigmoid(s) / ds at sigmoid(s) = 0.2
    assert grads[100, "per_unit"] == grads[100_000, "per_unit"]
    assert math.isclose(grads[100, "per_unit"], expected, rel_tol=1e-5)
    assert math.isclose(grads[100, "mean"], expected / 100, rel_tol=1e-5)
    assert math.isclose(grads[100_000, "mean"], expected / 100_000, rel_tol=1e-5)
    module = MaskScores({"a": (3, 4), "b": (5,)}, init_p=0.3)
    assert math.isclose(module.penalty("per_unit").item(), 17 * 0.3, rel_tol=1e-5)
    assert math.isclose(module.penalty("mean").item(), 0.3, rel_tol=1e-5)


def test_straight_through_gradient_is_the_soft_samples_and_the_random_stream_moves_as_one_draw():
    """The backward draws the forward's noise again from the generator's saved state: its gradient is
    exactly the soft sample's, and the generator ends where one draw leaves it."""
    scores = torch.linspace(-4, 4, 5000).requires_grad_()
    weights = torch.randn(5000, generator=torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(0)
    hard = gumbel_sigmoid(scores, temperature=0.7, noise=0.8, generator=gen)
    (hard * weights).sum().backward()

    u = torch.rand(5000, generator=torch.Generator().manual_seed(0)).clamp(1e-6, 1 - 1e-6)
    free = scores.detach().clone().requires_grad_()
    soft = torch.sigmoid((free + 0.8 * (u.log() - (-u).log1p())) / 0.7)
    (soft * weights).sum().backward()
    assert torch.equal(hard, (soft > 0.5).float())
    torch.testing.assert_close(scores.grad, free.grad, rtol=1e-5, atol=1e-6)  # 1 - soft cancels in float32 far out
    assert torch.equal(torch.rand(3, generator=gen), torch.rand(5003, generator=torch.Generator().manual_seed(0))[5000:])


def test_draw_and_add_sample_grad_are_sample_and_its_backward():
    """The trainer's path outside autograd gives the samples and score gradients autograd gives,
    added to a gradient the scores hold already (the sparsity term's)."""
    shapes = {"a": (30, 20), "b": (50,)}
    weights = {n: torch.randn(shape, generator=torch.Generator().manual_seed(2)) for n, shape in shapes.items()}
    grads = {}
    for path in ("autograd", "draw"):
        module = MaskScores(shapes, init_p=0.4)
        module.penalty("per_unit").backward()
        gen = torch.Generator().manual_seed(0)
        if path == "autograd":
            masks = module.sample(temperature=0.7, noise=0.8, generator=gen)
            sum((masks[n] * weights[n]).sum() for n in shapes).backward()
        else:
            draws = module.draw(temperature=0.7, noise=0.8, generator=gen)
            masks = {n: m for n, (m, _) in draws.items()}
            module.add_sample_grad({n: s for n, (_, s) in draws.items()}, {n: w.clone() for n, w in weights.items()},
                                   temperature=0.7, noise=0.8)
        grads[path] = ([masks[n].detach() for n in shapes], [s.grad.clone() for s in module.scores], torch.rand(2, generator=gen))
    for a, b in zip(*grads.values()):
        for x, y in zip(a, b):
            assert torch.equal(x, y)


def test_add_sample_grad_takes_the_given_gradients_buffers_over():
    """No tensor the size of the scores beside the push: a score without a gradient gets the given one's buffer."""
    module = MaskScores({"a": (30, 20)}, init_p=0.4)
    draws = module.draw(temperature=0.7, noise=0.8, generator=torch.Generator().manual_seed(0))
    push = torch.randn(30, 20)
    module.add_sample_grad({"a": draws["a"][1]}, {"a": push}, temperature=0.7, noise=0.8)
    assert module.scores[0].grad.data_ptr() == push.data_ptr()


def test_add_penalty_grad_is_the_penalty_and_its_weighted_gradient():
    for mode in ("per_unit", "mean"):
        shapes = {"a": (30, 20), "b": (50,)}
        by_autograd, by_hand = MaskScores(shapes, init_p=0.3), MaskScores(shapes, init_p=0.3)
        for module in (by_autograd, by_hand):
            with torch.no_grad():
                for i, s in enumerate(module.scores):
                    s.copy_(torch.linspace(-3, 2, s.numel()).reshape(s.shape) + i)
                    s.grad = torch.full_like(s, 0.5)  # a gradient the terms left already
        value = by_autograd.penalty(mode)
        (0.7 * value).backward()
        assert by_hand.add_penalty_grad(0.7, mode).item() == pytest.approx(value.item(), rel=1e-6)
        for a, b in zip(by_autograd.scores, by_hand.scores):
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-6, atol=1e-9)

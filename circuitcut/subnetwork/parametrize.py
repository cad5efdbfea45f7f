"""Mask scores and the Gumbel-sigmoid straight-through estimator (Bayazit et al., arXiv 2310.03084).

Every maskable unit (a weight, or a neuron) has a real-valued score ``s``. Its mask value ``m`` is 1
when the unit belongs to the *subnetwork*:

* training: ``m = hard(sigmoid((s + b * g) / T))`` with logistic noise ``g`` of scale ``b`` (at
  ``b = 1`` a Gumbel-sigmoid sample: ``m = 1`` with probability ``sigmoid(s)``) and a threshold at
  0.5; the backward pass uses the gradient of the soft sample (straight-through), so the forward
  pass always sees a real 0/1 mask. The temperature ``T`` only shapes that gradient: the hard
  sample is ``[s + b * g > 0]`` whatever ``T`` is, so only ``b`` moves the training mask towards
  the evaluation mask (``b = 0``: they are equal);
* evaluation: ``m = [sigmoid(s) > 0.5]``, deterministic.

Scores start at ``logit(p)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn


def logit(p: float) -> float:
    if not 0 < p < 1:
        raise ValueError(f"A probability strictly between 0 and 1 is needed, got {p}.")
    return math.log(p / (1 - p))


def gumbel_sigmoid(
    scores: Float[Tensor, "*shape"],
    *,
    temperature: float = 1.0,
    noise: float = 1.0,
    generator: torch.Generator | None = None,
) -> Float[Tensor, "*shape"]:
    """A hard 0/1 sample whose gradient is that of the soft Gumbel-sigmoid sample (straight-through)."""
    return _GumbelSTE.apply(scores, noise, temperature, generator)


def hard_sample(
    scores: Float[Tensor, "*shape"], *, temperature: float, noise: float, generator: torch.Generator | None
) -> tuple[Float[Tensor, "*shape"], Tensor]:
    """``[s + b * logit(u) > 0]`` as an exact 0/1 float (in the buffer of the draw ``u``), and the random
    state the draw started from: what :func:`sample_grad` needs to draw the same noise again."""
    state = (generator.get_state() if generator is not None
             else torch.cuda.get_rng_state(scores.device) if scores.is_cuda else torch.get_rng_state())
    u = torch.rand(scores.shape, generator=generator, device=scores.device, dtype=scores.dtype)
    return _logistic_input(scores, u, noise, temperature).gt_(0), state


def sample_grad(
    scores: Float[Tensor, "*shape"], state: Tensor, grad: Float[Tensor, "*shape"], *, temperature: float, noise: float,
    in_place: bool = False,
) -> Float[Tensor, "*shape"]:
    """The straight-through gradient on ``scores`` of the :func:`hard_sample` drawn from ``state``, given
    the loss's gradient ``grad`` on that sample: ``grad`` times the soft sample's slope ``d sigmoid(x) / d s
    = 0.25 / cosh(x / 2)^2 / T``, ``x = (s + b * logit(u)) / T``, with ``u`` drawn again from ``state``.
    ``in_place``: written into ``grad``'s buffer (a caller that gives ``grad`` up saves a tensor its size)."""
    again = torch.Generator(device=scores.device)
    again.set_state(state)
    u = torch.rand(scores.shape, generator=again, device=scores.device, dtype=scores.dtype)
    slope = _logistic_input(scores, u, noise, temperature).mul_(0.5).cosh_().square_().reciprocal_().mul_(0.25 / temperature)
    return grad.mul_(slope) if in_place else slope.mul_(grad)


def _logistic_input(scores: Tensor, u: Tensor, noise: float, temperature: float) -> Tensor:
    """``(s + b * logit(u)) / T``, computed in the buffer of the uniform draw ``u``."""
    return u.clamp_(1e-6, 1 - 1e-6).logit_().mul_(noise).add_(scores.detach()).div_(temperature)


class _GumbelSTE(torch.autograd.Function):
    """:func:`hard_sample` forward, :func:`sample_grad` backward.

    Nothing the size of the scores is kept between the two: the backward draws the same noise again
    from the saved random state (a weight run's 53 M scores would otherwise keep a 212 MB soft sample
    alive through every forward), and every elementwise step works in place.
    """

    @staticmethod
    def forward(ctx, scores: Tensor, noise: float, temperature: float, generator: torch.Generator | None) -> Tensor:
        hard, state = hard_sample(scores, temperature=temperature, noise=noise, generator=generator)
        ctx.save_for_backward(scores, state)
        ctx.noise, ctx.temperature = noise, temperature
        return hard

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        scores, state = ctx.saved_tensors
        return sample_grad(scores, state, grad, temperature=ctx.temperature, noise=ctx.noise), None, None, None


def deterministic_mask(scores: Float[Tensor, "*shape"]) -> Bool[Tensor, "*shape"]:
    """The evaluation mask: units whose probability of being in the subnetwork exceeds 0.5."""
    return scores > 0


class MaskScores(nn.Module):
    """One score tensor per mask site (a weight matrix, or one layer's neurons), keyed by site name.

    Site names contain dots (``blocks.15.mlp.in``), which ``nn.ParameterDict`` refuses, so the
    parameters are stored in a list in the order of ``names``.
    """

    def __init__(self, shapes: dict[str, tuple[int, ...]], init_p: float = 0.45):
        super().__init__()
        if not shapes:
            raise ValueError("No mask sites: choose at least one layer and one matrix or neuron kind.")
        self.names = list(shapes)
        self.scores = nn.ParameterList(
            nn.Parameter(torch.full(shape, logit(init_p), dtype=torch.float32)) for shape in shapes.values()
        )

    def items(self) -> Iterable[tuple[str, nn.Parameter]]:
        return zip(self.names, self.scores)

    def n_units(self) -> int:
        return sum(s.numel() for s in self.scores)

    def sample(
        self, *, temperature: float = 1.0, noise: float = 1.0, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """A straight-through subnetwork mask per site (1 = in the subnetwork), differentiable.

        The noise is drawn even at ``noise=0``, so the random stream does not depend on the schedule.
        """
        return {n: gumbel_sigmoid(s, temperature=temperature, noise=noise, generator=generator) for n, s in self.items()}

    def draw(
        self, *, temperature: float = 1.0, noise: float = 1.0, generator: torch.Generator | None = None
    ) -> dict[str, tuple[Float[Tensor, "*shape"], Tensor]]:
        """Per site, a hard training sample outside autograd and the random state it was drawn from: the
        same samples as :meth:`sample`, for a caller that takes over their buffers and gives their gradient
        to :meth:`add_sample_grad`."""
        return {n: hard_sample(s.detach(), temperature=temperature, noise=noise, generator=generator)
                for n, s in self.items()}

    def add_sample_grad(
        self, states: dict[str, Tensor], grads: dict[str, Tensor], *, temperature: float, noise: float
    ) -> None:
        """Add to each score's ``.grad`` the straight-through gradient of its :meth:`draw` sample (as the
        backward of :meth:`sample` would), given the loss's gradient on the sample; sites without one get none.
        Each gradient in ``grads`` is taken over: a score's ``.grad`` is computed in its buffer."""
        for name, s in self.items():
            if name in grads:
                g = sample_grad(s.detach(), states[name], grads[name], temperature=temperature, noise=noise, in_place=True)
                s.grad = g if s.grad is None else s.grad.add_(g)

    def hard(self) -> dict[str, Bool[Tensor, "*shape"]]:
        """The deterministic subnetwork (True = in the subnetwork)."""
        return {n: deterministic_mask(s.detach()) for n, s in self.items()}

    def expected_size(self) -> Float[Tensor, ""]:
        """Sum of sigmoid(scores): the expected number of units in a sampled subnetwork.

        The sparsity loss pushes it (``per_unit``) or its mean over units (``mean``) down.
        """
        return sum(torch.sigmoid(s).sum() for s in self.scores)

    def penalty(self, mode: str) -> Float[Tensor, ""]:
        """The sparsity term before its weight: ``per_unit`` the expected size, ``mean`` the expected fraction."""
        size = self.expected_size()
        return size if mode == "per_unit" else size / self.n_units()

    @torch.no_grad()
    def add_penalty_grad(self, weight: float, mode: str) -> Float[Tensor, ""]:
        """:meth:`penalty`, adding ``weight`` times its gradient ``sigmoid(s) * (1 - sigmoid(s))`` (over the
        number of units for ``mean``) to each score's ``.grad``, one site at a time: autograd would hold the
        sigmoid of every score and then its gradient, two tensors the size of all scores."""
        scale = weight if mode == "per_unit" else weight / self.n_units()
        size = torch.zeros(())
        for s in self.scores:
            p = torch.sigmoid(s)
            size = size + p.sum()
            slope = p.mul_(1 - p)
            s.grad = slope.mul_(scale) if s.grad is None else s.grad.add_(slope, alpha=scale)
        return size if mode == "per_unit" else size / self.n_units()

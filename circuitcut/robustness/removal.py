"""A removal held in place while the rest of the model trains: hooks, or surgery with frozen zeros.

Any removal circuitcut makes (a :class:`~circuitcut.masks.Mask` of selective pruning, of a learned subnetwork,
or a random twin of either) is held in one of two ways:

* ``hooks``: the mask acts on activations (neurons) or multiplies the weights (weight-level
  subnetworks) inside a context, so whatever the optimiser does to the weights underneath,
  removed units contribute exactly zero;
* ``surgery``: the weights the removed units own are zeroed, and their gradients are zeroed on
  every backward pass, so Adam (whose update is 0 where every gradient was 0) never moves them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Bool
from torch import Tensor, nn
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.masks import Mask

Hold = Literal["hooks", "surgery"]
HOLDS: tuple[Hold, ...] = ("hooks", "surgery")


@dataclass
class Removal:
    """One removal to fine-tune under: a name for reports and its mask (``None``: the original model)."""

    name: str
    mask: Mask | None

    def size(self) -> int:
        """Units removed: neurons or weights."""
        return 0 if self.mask is None else self.mask.n_removed()

    @contextmanager
    def held(self, model: TransformerBridge, how: Hold) -> Iterator[None]:
        """Run and train ``model`` with the removal in place (surgery edits the weights for good)."""
        if how not in HOLDS:
            raise ValueError(f"Unknown hold '{how}': choose from {', '.join(HOLDS)}.")
        if self.mask is None:
            yield
            return
        if how == "hooks":
            with self.mask.remaining(model):
                yield
            return
        frozen = surgery_pattern(model, self.mask.remove_from)
        self.mask.remove_from(model)
        with ExitStack() as stack:
            for param, zero in frozen:
                handle = param.register_hook(lambda grad, zero=zero: grad.masked_fill(zero, 0))
                stack.callback(handle.remove)
            yield


def surgery_pattern(model: TransformerBridge, surgery) -> list[tuple[nn.Parameter, Bool[Tensor, "..."]]]:
    """Which entries of which parameters ``surgery(model)`` zeroes, found without knowing the sites.

    Every parameter is set to ones, the surgery runs, and the zeros it left are the pattern; the
    weights are then restored. Entries that happen to be zero already are found too, which a
    comparison before/after would miss.
    """
    params = list(model.parameters())
    with torch.no_grad():
        saved = [p.detach().clone() for p in params]
        for p in params:
            p.fill_(1)
        surgery(model)
        pattern = [(p, p == 0) for p in params]
        for p, s in zip(params, saved):
            p.copy_(s)
    return [(p, zero) for p, zero in pattern if zero.any()]

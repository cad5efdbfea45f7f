"""Next-token metrics on token windows: top-1/top-10 accuracy (also skipping common tokens), loss, PPL.

The skip-common variant counts only positions whose target token is not among the ``k`` most
frequent target tokens of the evaluated windows (``../shared/METRICS.md``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.masks import Hook
from circuitcut.stats import StatsHook, stream


@dataclass
class TokenMetrics:
    """Next-token metrics over a set of windows; accuracies in percent."""

    top1: float
    top10: float
    top1_skip: float
    top10_skip: float
    loss: float
    perplexity: float
    n_tokens: int

    def to_dict(self) -> dict:
        return asdict(self)


def common_tokens(tokens: Int[Tensor, "n pos"], k: int = 50) -> Int[Tensor, " k"]:
    """The ``k`` most frequent next-token targets of these windows."""
    counts = torch.bincount(tokens[:, 1:].flatten())
    return counts.topk(min(k, int((counts > 0).sum()))).indices


class _Tally:
    """Running sums of per-position results; one instance per evaluation."""

    def __init__(self, skip: Int[Tensor, " k"]):
        self.skip = skip
        self.n = self.n_skip = 0
        self.top1 = self.top10 = self.top1_skip = self.top10_skip = 0
        self.nll = 0.0

    def __call__(self, batch: Int[Tensor, "batch pos"], logits: Float[Tensor, "batch pos vocab"]) -> None:
        logits = logits[:, :-1].float()
        target = batch[:, 1:].to(logits.device)
        target_logit = logits.gather(-1, target[..., None])
        # The rank of the target is the number of logits above it: one pass, no sort.
        rank = (logits > target_logit).sum(-1)
        keep = ~torch.isin(target, self.skip.to(target.device))
        self.n += target.numel()
        self.n_skip += int(keep.sum())
        self.top1 += int((rank == 0).sum())
        self.top10 += int((rank < 10).sum())
        self.top1_skip += int(((rank == 0) & keep).sum())
        self.top10_skip += int(((rank < 10) & keep).sum())
        self.nll += float(F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="sum"))

    def result(self) -> TokenMetrics:
        loss = self.nll / self.n
        return TokenMetrics(
            top1=100 * self.top1 / self.n,
            top10=100 * self.top10 / self.n,
            top1_skip=100 * self.top1_skip / max(self.n_skip, 1),
            top10_skip=100 * self.top10_skip / max(self.n_skip, 1),
            loss=loss,
            perplexity=math.exp(loss),
            n_tokens=self.n,
        )


def evaluate_tokens(
    model: TransformerBridge,
    tokens: Int[Tensor, "n pos"],
    *,
    fwd_hooks: list[Hook] = (),
    skip_common: int = 50,
    stat_hooks: list[tuple[str, StatsHook]] = (),
    batch_size: int = 8,
    progress: bool = False,
    desc: str = "evaluate",
) -> TokenMetrics:
    """Next-token metrics of the model (edited by ``fwd_hooks``) on ``tokens``.

    ``stat_hooks`` let the same forward passes collect neuron statistics as well.

    Example:
        >>> m = evaluate_tokens(model, windows)
        >>> m.top1, m.perplexity
    """
    tally = _Tally(common_tokens(tokens, skip_common))
    stream(model, tokens, fwd_hooks=fwd_hooks, on_batch=tally, stat_hooks=stat_hooks,
           batch_size=batch_size, desc=desc, progress=progress)
    return tally.result()

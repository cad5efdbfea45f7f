"""Next-token metrics on token windows: top-1/top-10 accuracy (also skipping common tokens), loss, PPL.

The skip-common variant counts only positions whose target token is not among the ``k`` most
frequent target tokens of the evaluated windows (docs/metrics.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.hooks import Hook
from circuitcut import distributed
from circuitcut.forward import TokenHook, stream


@dataclass
class TokenMetrics:
    """Next-token metrics over a set of windows; accuracies in percent.

    A target counts in the top k when fewer than k logits are strictly above its own, so a target
    tied with the highest logit counts as top-1.
    """

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
    """The ``k`` most frequent next-token targets of these windows; among equally frequent tokens,
    the lower ids first (``topk`` leaves that order unspecified, so the skipped set could change
    from one machine to another)."""
    counts = torch.bincount(tokens[:, 1:].flatten())
    order = torch.sort(counts, descending=True, stable=True).indices
    return order[: min(k, int((counts > 0).sum()))]


_COUNTS = ("n", "n_skip", "top1", "top10", "top1_skip", "top10_skip", "nll")


class _Tally:
    """Running sums of per-position results; one instance per evaluation.

    The sums stay a float64 tensor on the logits' device (no per-batch host sync on a GPU) and
    are read once at the end; being sums, they reduce across data-parallel ranks by addition.
    """

    def __init__(self, skip: Int[Tensor, " k"]):
        self.skip = skip
        self.sums: Float[Tensor, " 7"] | None = None

    def __call__(self, batch: Int[Tensor, "batch pos"], logits: Float[Tensor, "batch pos vocab"]) -> None:
        logits = logits[:, :-1]
        target = batch[:, 1:].to(logits.device)
        target_logit = logits.gather(-1, target[..., None])[..., 0]
        # The target's rank is the number of logits strictly above it, so rank < k exactly when the
        # target logit is >= the k-th largest logit: one top-10 (a fifth of the cost of counting
        # over the vocabulary). In the model's dtype: converting to float32 is exact, ranks agree.
        top = logits.topk(min(10, logits.shape[-1]), dim=-1).values
        if self.skip.device != target.device:
            self.skip = self.skip.to(target.device)
        keep = ~torch.isin(target, self.skip)
        # Cross-entropy as logsumexp - target logit: no log-softmax copy of the logits.
        nll = (logits.float().logsumexp(-1) - target_logit.float()).sum()
        top1, top10 = target_logit >= top[..., 0], target_logit >= top[..., -1]
        batch_sums = torch.stack([
            torch.tensor(float(target.numel()), device=target.device), keep.sum(), top1.sum(), top10.sum(),
            (top1 & keep).sum(), (top10 & keep).sum(), nll,
        ]).double()
        self.sums = batch_sums if self.sums is None else self.sums + batch_sums

    def result(self) -> TokenMetrics:
        values = dict(zip(_COUNTS, self.sums.tolist() if self.sums is not None else [0.0] * len(_COUNTS)))
        n, n_skip = int(values["n"]), int(values["n_skip"])
        loss = values["nll"] / max(n, 1)
        return TokenMetrics(
            top1=100 * values["top1"] / max(n, 1),
            top10=100 * values["top10"] / max(n, 1),
            top1_skip=100 * values["top1_skip"] / max(n_skip, 1),
            top10_skip=100 * values["top10_skip"] / max(n_skip, 1),
            loss=loss,
            perplexity=math.exp(loss),
            n_tokens=n,
        )


def evaluate_tokens(
    model: TransformerBridge,
    tokens: Int[Tensor, "n pos"],
    *,
    fwd_hooks: list[Hook] = (),
    skip_common: int = 50,
    stat_hooks: list[tuple[str, TokenHook]] = (),
    batch_size: int = 8,
    progress: bool = False,
    desc: str = "evaluate",
    across_ranks: bool = False,
) -> TokenMetrics:
    """Next-token metrics of the model (edited by ``fwd_hooks``) on ``tokens``.

    ``stat_hooks`` let the same forward passes collect neuron statistics as well. With
    ``across_ranks=True`` (under ``torchrun``, see :mod:`circuitcut.distributed`) each rank scores
    its share of the windows and every rank returns the metrics of all of them (the common tokens
    are those of all the windows either way); ``stat_hooks`` then see this rank's share only.

    Example:
        >>> m = evaluate_tokens(model, windows)
        >>> m.top1, m.perplexity
    """
    tally = _Tally(common_tokens(tokens, skip_common))
    if across_ranks:
        tokens = distributed.shard(tokens)
    stream(model, tokens, fwd_hooks=fwd_hooks, on_batch=tally, stat_hooks=stat_hooks,
           batch_size=batch_size, desc=desc, progress=progress and distributed.is_main_process())
    if across_ranks:
        device = next(model.parameters()).device
        # A clone: the sums were made under inference mode, which forbids later in-place updates.
        tally.sums = tally.sums.clone() if tally.sums is not None else torch.zeros(
            len(_COUNTS), dtype=torch.float64, device=device)
        distributed.all_reduce_([tally.sums])
    return tally.result()


def percent(hits: Bool[Tensor, " n"]) -> float:
    """Percent of rows that hit, exact in float64 (a float32 mean makes 2 of 20 into 10.000000149, which
    the selection rule's "at most 10 %" would refuse)."""
    return 100 * int(hits.sum()) / hits.numel()


def sparsity_text(sparsity: float) -> str:
    """Sparsity in percent with two significant digits of what is in the subnetwork: ``99.65``, or
    ``99.9988`` for a few hundred of 53 million weights, which two decimals would round to ``100.00``."""
    inside = 100 - sparsity
    decimals = 2 if inside <= 0 else max(2, 1 - math.floor(math.log10(inside)))
    return f"{sparsity:.{decimals}f}"

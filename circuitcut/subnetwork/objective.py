"""The loss terms of a knowledge-critical subnetwork, all measured on the *remaining* model.

* suppression, where the remaining model should predict a TargetKG tail (first tail token):
  ``uniform``, ``KL(U || p)`` between the uniform distribution over the vocabulary and the
  remaining model's next-token distribution (the paper's: the model should have no idea what
  comes next), ``unlikely``, ``-log(1 - p(tail))`` (only the tail is pushed down, so the prompt's
  other continuations, which control facts share, are left alone; its pull fades with ``p(tail)``),
  or ``margin``, a hinge that pushes the tail's logit one nat below the ``until_rank``-th other token
  (a pull of one per logit until then). Each stops for a fact whose tail already ranks below
  ``until_rank`` (no units are spent on overshooting);
* maintenance: ``KL(p_orig || p)`` to the original model, on ControlKG tail predictions and on
  every position of ControlLM windows;
* sparsity: the expected subnetwork size (:meth:`MaskScores.penalty`), pushed down.

The original model's distributions are computed once (:func:`reference`). ControlKG keeps the full
log-probabilities (one row per fact: 200 facts are 39 MB). ControlLM keeps only the ``top_k``
original log-probs per position plus the rest mass: the full ones cost 25 MB per 128-token window,
so a pool large enough not to be memorised (64 windows) would take 1.6 GB, while top-64 takes
0.5 KB per position. The KL between the two distributions coarse-grained to "each top-k token, or
any other token" is a lower bound on the full KL that is exact when k is the vocabulary size, and
in practice top-64 carries almost all of a language model's mass (see :func:`topk_kl`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.data.kg import KGBatch, tail_logits


def kg_logits(model: TransformerBridge, batch: KGBatch) -> Float[Tensor, "batch vocab"]:
    """Logits at the position that predicts each fact's first tail token (only that position is unembedded:
    :func:`~circuitcut.data.kg.known.tail_logits`)."""
    return tail_logits(model, batch, width=1)[:, 0].float()


def kl_from_uniform(logits: Float[Tensor, "batch vocab"]) -> Float[Tensor, " batch"]:
    """``KL(U || p)`` per row; 0 exactly when ``p`` is uniform."""
    return -math.log(logits.shape[-1]) - logits.log_softmax(-1).mean(-1)


def unlikelihood(logits: Float[Tensor, "batch vocab"], tail: Int[Tensor, " batch"]) -> Float[Tensor, " batch"]:
    """``-log(1 - p(tail))`` per row: large while the tail is likely, about ``p(tail)`` once it is not.

    Computed as ``logsumexp(all) - logsumexp(all but the tail)``, which keeps its gradient even when
    ``p(tail)`` rounds to 1 in float32.
    """
    others = logits.scatter(-1, tail[:, None], float("-inf"))
    return logits.logsumexp(-1) - others.logsumexp(-1)


def margin(logits: Float[Tensor, "batch vocab"], tail: Int[Tensor, " batch"], k: int) -> Float[Tensor, " batch"]:
    """``max(0, z_tail - z_k + 1)`` per row, ``z_k`` the k-th largest logit of the other tokens: pushes the
    tail below k other tokens by a margin of one nat, with a pull that does not fade as ``p(tail)`` falls."""
    others = logits.scatter(-1, tail[:, None], float("-inf"))
    kth = others.topk(k, dim=-1).values[:, -1]
    return (logits.gather(-1, tail[:, None]).squeeze(-1) - kth + 1).clamp(min=0)


def tail_rank(logits: Float[Tensor, "batch vocab"], tail: Int[Tensor, " batch"]) -> Int[Tensor, " batch"]:
    """Rank of each row's tail token (1 = the top prediction)."""
    return (logits > logits.gather(-1, tail[:, None])).sum(-1) + 1


def suppression(
    logits: Float[Tensor, "batch vocab"], tail: Int[Tensor, " batch"], kind: str, until_rank: int | None
) -> Float[Tensor, ""]:
    """The TargetKG term, a mean over facts; a fact whose tail ranks below ``until_rank`` adds 0."""
    if kind == "uniform":
        per_fact = kl_from_uniform(logits)
    elif kind == "margin":
        per_fact = margin(logits, tail, until_rank or 10)
    else:
        per_fact = unlikelihood(logits, tail)
    if until_rank is not None:
        per_fact = per_fact * (tail_rank(logits.detach(), tail) <= until_rank)
    return per_fact.mean()


def kl_to_reference(ref_logp: Float[Tensor, "batch vocab"], logits: Float[Tensor, "batch vocab"]) -> Float[Tensor, ""]:
    """``KL(p_ref || p)`` averaged over the batch."""
    return F.kl_div(logits.log_softmax(-1), ref_logp, log_target=True, reduction="batchmean")


def _rest(logp_top: Float[Tensor, "*n k"]) -> Float[Tensor, "*n"]:
    """log of the probability mass outside the top-k: log(1 - sum exp(logp_top)), kept finite."""
    return torch.log1p(-logp_top.exp().sum(-1).clamp(max=1 - 1e-6))


def topk_kl(
    ref_index: Int[Tensor, "*n k"], ref_logp: Float[Tensor, "*n k"], logits: Float[Tensor, "*n vocab"]
) -> Float[Tensor, ""]:
    """KL from the reference to ``p`` over the k reference tokens plus one "rest" bucket, per-position mean."""
    logp_top = logits.log_softmax(-1).gather(-1, ref_index)
    kl = (ref_logp.exp() * (ref_logp - logp_top)).sum(-1)
    ref_rest = _rest(ref_logp)
    kl = kl + ref_rest.exp() * (ref_rest - _rest(logp_top))
    return kl.mean()


@dataclass
class Reference:
    """The original model's predictions, computed once before training."""

    control_logp: Float[Tensor, "n_control vocab"]
    lm_index: Int[Tensor, "n_windows pos k"]
    lm_logp: Float[Tensor, "n_windows pos k"]


@torch.no_grad()
def reference(
    model: TransformerBridge,
    control: KGBatch,
    lm_windows: Int[Tensor, "n_windows window"],
    *,
    top_k: int = 64,
    batch_size: int = 8,
) -> Reference:
    """Cache the original model's ControlKG log-probs (full) and ControlLM log-probs (top-k)."""
    control_logp = torch.cat([kg_logits(model, b).log_softmax(-1).cpu() for b in control.batches(batch_size * 4)])
    index, logp = [], []
    device = next(model.parameters()).device
    for batch in lm_windows.split(batch_size):
        top = model(batch.to(device)).float().log_softmax(-1).topk(top_k, dim=-1)
        index.append(top.indices.cpu())
        logp.append(top.values.cpu())
    return Reference(control_logp, torch.cat(index), torch.cat(logp))

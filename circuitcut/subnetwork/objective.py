"""The loss terms of a knowledge-critical subnetwork, all measured on the *remaining* model.

* suppression: ``KL(U || p)`` between the uniform distribution over the vocabulary and the
  remaining model's next-token distribution where it should predict a TargetKG tail (first tail
  token): the remaining model should have no idea what the tail is;
* maintenance: ``KL(p_orig || p)`` to the original model, on ControlKG tail predictions and on
  every position of ControlLM windows;
* sparsity: the mean of sigmoid(scores) (:meth:`MaskScores.density`), pushed down.

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


def kg_logits(
    model: TransformerBridge, tokens: Int[Tensor, "batch pos"], predict_pos: Int[Tensor, " batch"]
) -> Float[Tensor, "batch vocab"]:
    """Logits at the position that predicts each fact's first tail token.

    Batches are right-padded; with causal attention the padding after ``predict_pos`` cannot
    change the prediction there.
    """
    device = next(model.parameters()).device
    logits = model(tokens.to(device))
    return logits[torch.arange(len(tokens), device=device), predict_pos.to(device)].float()


def kl_from_uniform(logits: Float[Tensor, "batch vocab"]) -> Float[Tensor, ""]:
    """``KL(U || p)`` averaged over the batch; 0 exactly when ``p`` is uniform."""
    logp = logits.log_softmax(-1)
    return (-math.log(logits.shape[-1]) - logp.mean(-1)).mean()


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
    control_tokens: Int[Tensor, "n_control pos"],
    control_predict_pos: Int[Tensor, " n_control"],
    lm_windows: Int[Tensor, "n_windows window"],
    *,
    top_k: int = 64,
    batch_size: int = 8,
) -> Reference:
    """Cache the original model's ControlKG log-probs (full) and ControlLM log-probs (top-k)."""
    control = torch.cat([
        kg_logits(model, t, p).log_softmax(-1).cpu()
        for t, p in zip(control_tokens.split(batch_size * 4), control_predict_pos.split(batch_size * 4))
    ])
    index, logp = [], []
    device = next(model.parameters()).device
    for batch in lm_windows.split(batch_size):
        top = model(batch.to(device)).float().log_softmax(-1).topk(top_k, dim=-1)
        index.append(top.indices.cpu())
        logp.append(top.values.cpu())
    return Reference(control, torch.cat(index), torch.cat(logp))


def sparsity_weight(step: int, steps: int, start: float, end: float) -> float:
    """``start`` over the first half of training, then rising linearly to ``end`` at the last step."""
    half = steps / 2
    if step < half:
        return start
    return start + (end - start) * (step - half) / max(steps - 1 - half, 1)


def learning_rate(step: int, steps: int, lr: float, warmup: float) -> float:
    """Linear warm-up over the first ``warmup`` fraction of steps, then constant."""
    n_warm = max(int(warmup * steps), 1)
    return lr * min(1.0, (step + 1) / n_warm)

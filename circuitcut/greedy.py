"""Greedy selection: a third way to pick the neurons whose removal erases a set of facts, one step at a time.

Selective pruning ranks neurons by activation statistics, a learned mask optimises a relaxed mask; greedy
selection picks neurons on a subnetwork run's training facts (:class:`~circuitcut.subnetwork.SubnetworkData`)
by what removing each one does:

    score_i = rise of the target's tail NLL - control_weight * max(rise of the kept cost, 0)

The target counts, like the learned margin term, only over rows whose first tail token is still in the top
``suppress_rank``; the kept cost is the control facts' tail NLL (plus ``lm_weight`` times that of a few
training text windows). A first-order estimate of each rise (``-dL/dkeep_i``; ``keep`` scales the neuron's
activation, 1 -> 0 is the removal) ranks the neurons; with ``candidates``, it shortlists that many, each is
then removed for real and the ``per_step`` best real scores join the removed set. Gradients and trials are
taken on the model without the neurons removed so far. Every step gives a :class:`~circuitcut.masks.Mask`,
scored as learned masks are (:func:`curve_point`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.data.kg import KGBatch, tail_logits
from circuitcut.masks import Mask
from circuitcut.robustness.examples import Windows
from circuitcut.sites import ModelShape
from circuitcut.subnetwork.config import SubnetworkConfig
from circuitcut.subnetwork.data import SubnetworkData
from circuitcut.subnetwork.evaluation import changes, evaluate_model
from circuitcut.subnetwork.neuron_masks import NeuronRemover, neuron_sites

CURVE_SETS = ("target", "target_paraphrase", "control", "control_new", "lm")
"""The evaluation sets a point of a greedy curve is scored on."""

Keep = dict[str, Float[Tensor, " neuron"]]


def mean_nll(model: TransformerBridge, keep: Keep, what: KGBatch | Int[Tensor, "window pos"]) -> Float[Tensor, ""]:
    """Mean tail NLL of a KG batch, or mean next-token NLL of text windows, on the model scaled by ``keep``."""
    with NeuronRemover(model, keep):
        if isinstance(what, KGBatch):
            return what.tail_nll(tail_logits(model, what), at_tail=True).mean()
        return Windows(what).loss(model, torch.arange(len(what)))


@torch.no_grad()
def pushed_rows(model: TransformerBridge, keep: Keep, batch: KGBatch, suppress_rank: int | None) -> KGBatch:
    """The rows the margin term still pushes: first tail token within ``suppress_rank`` (all rows: ``None``)."""
    if suppress_rank is None:
        return batch
    with NeuronRemover(model, keep):
        pushed = batch.score(tail_logits(model, batch), at_tail=True).rank <= suppress_rank
    return batch[pushed.nonzero().flatten()]


def removal_effects(model: TransformerBridge, keep: Keep, loss: Callable[[Keep], Tensor]) -> tuple[Tensor, Keep]:
    """``loss(keep)`` and the first-order rise of it when each kept neuron is removed: ``-dL/dkeep``
    (zeros where the loss does not depend on ``keep``, e.g. no target row left to push)."""
    keep = {name: k.detach().clone().requires_grad_() for name, k in keep.items()}
    value = loss(keep)
    if not value.requires_grad:
        return value, {name: torch.zeros_like(k) for name, k in keep.items()}
    grads = torch.autograd.grad(value, list(keep.values()))
    return value.detach(), {name: -g for name, g in zip(keep, grads)}


def greedy_step(
    model: TransformerBridge,
    mask: Mask,
    data: SubnetworkData,
    *,
    control_weight: float,
    per_step: int,
    suppress_rank: int | None,
    candidates: int = 0,
    lm_weight: float = 0.0,
    lm_windows: int = 4,
) -> Mask:
    """``mask`` with the ``per_step`` kept neurons of best score added (across all its sites).

    The kept cost is the control facts' mean tail NLL plus ``lm_weight`` times the mean NLL of the
    first ``lm_windows`` training text windows. With ``candidates`` > 0, the first-order score only
    shortlists that many neurons; each is then removed for real (one at a time, beside those removed
    so far) and the best real scores win: a neuron with large activations can cost far more than its
    gradient says.
    """
    names, sizes = list(mask.removed), [m.numel() for m in mask.removed.values()]
    flat_removed = torch.cat(list(mask.removed.values()))
    keep = mask.keep()
    pushed = pushed_rows(model, keep, data.target, suppress_rank)
    text = data.lm[:lm_windows]

    def target(keep: Keep) -> Tensor:
        return mean_nll(model, keep, pushed) if len(pushed) else torch.zeros(())

    def kept(keep: Keep) -> Tensor:
        return mean_nll(model, keep, data.control) + (lm_weight * mean_nll(model, keep, text) if lm_weight else 0)

    (base_t, rise_t), (base_k, rise_k) = removal_effects(model, keep, target), removal_effects(model, keep, kept)
    first_order = torch.cat([rise_t[n] - control_weight * rise_k[n].clamp(min=0) for n in names])
    first_order = first_order.masked_fill(flat_removed, -torch.inf)
    if candidates > 0:
        shortlist = first_order.topk(candidates).indices
        with torch.no_grad():
            real = []
            for i in shortlist.tolist():
                trial = (~flat_removed).float()
                trial[i] = 0
                trial_keep = dict(zip(names, trial.split(sizes)))
                cost = (kept(trial_keep) - base_k).clamp(min=0)
                real.append(float(target(trial_keep) - base_t - control_weight * cost))
        picked = shortlist[torch.tensor(real).topk(per_step).indices]
    else:
        picked = first_order.topk(per_step).indices
    flat = flat_removed.clone()
    flat[picked] = True
    return Mask(mask.shape, "neuron", dict(zip(names, flat.split(sizes))))


def greedy_masks(
    model: TransformerBridge, config: SubnetworkConfig, data: SubnetworkData, *, control_weight: float,
    steps: int, per_step: int, candidates: int = 0, lm_weight: float = 0.0,
) -> Iterator[Mask]:
    """The mask after each of ``steps`` greedy steps, over the neuron sites ``config`` masks."""
    shape = ModelShape.of(model)
    sites = neuron_sites(shape, list(config.resolved_layers(shape)), config.neuron_kinds)
    mask = Mask(shape, "neuron", {name: torch.zeros(size, dtype=torch.bool) for name, size in sites.items()})
    for _ in range(steps):
        mask = greedy_step(model, mask, data, control_weight=control_weight, per_step=per_step,
                           suppress_rank=config.suppress_rank, candidates=candidates, lm_weight=lm_weight)
        yield mask


def curve_point(model: TransformerBridge, mask: Mask, data: SubnetworkData, original: dict) -> dict:
    """Target top-10 (training, paraphrased) and control dPPL (trained-on and never-seen facts, text) of
    the model without ``mask``, and the neurons it removes; ``original``: :func:`evaluate_model` of the
    model on :data:`CURVE_SETS`."""
    remaining = evaluate_model(model, data, mask, sets=CURVE_SETS)
    change = changes({n: original[n] for n in remaining}, remaining)
    return {
        "neurons": mask.n_removed(),
        "per_layer": {layer: n["subnetwork"] for layer, n in mask.per_layer().items() if n["subnetwork"]},
        "target_top10": remaining["target"]["top10"],
        "paraphrase_top10": remaining["target_paraphrase"]["top10"],
        "target_dppl": change["target"]["dppl"],
        "control_dppl": change["control"]["dppl"],
        "control_new_dppl": change["control_new"]["dppl"],
        "lm_dppl": change["lm"]["dppl"],
        "removed": {name: m.nonzero().flatten().tolist() for name, m in mask.removed.items() if m.any()},
    }

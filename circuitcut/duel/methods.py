"""Each method's masks on one task, all over the same neuron sites (those the learned neuron mask trains).

Selective pruning ranks neurons by ``importance(forget) / (importance(retain) + eps)``
(:func:`~circuitcut.pruning.selectivity_scores`) with the statistics re-collected on the model without the
neurons removed so far, as ``circuitcut prune`` does step by step; here a step goes to the next neuron count
of the duel's sizes, ranked across the duel's sites, and the statistics can skip padding (fact batches).
Learned masks come from :func:`~circuitcut.subnetwork.find_subnetwork` (and, at the other methods' sizes, from its
scores read as a ranking: :func:`learned_ranking_masks`), greedy selection's from :func:`~circuitcut.greedy.greedy_masks`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.duel.config import DuelConfig
from circuitcut.duel.tasks import Task, Tokens
from circuitcut.greedy import greedy_masks
from circuitcut.masks import Mask, by_site
from circuitcut.pruning import DEFAULT_EPS, selectivity_scores, top_unpruned
from circuitcut.sites import ModelShape, Importance, neuron_site
from circuitcut.stats import NeuronStats, collect_stats
from circuitcut.subnetwork import SubnetworkResult, find_subnetwork
from circuitcut.subnetwork.neuron_masks import neuron_sites


def blank_mask(model: TransformerBridge, config: DuelConfig) -> Mask:
    """A neuron mask over the duel's sites that removes nothing."""
    shape = ModelShape.of(model)
    sub = config.subnetwork()
    sites = neuron_sites(shape, list(sub.resolved_layers(shape)), sub.neuron_kinds)
    return Mask(shape, "neuron", {name: torch.zeros(size, dtype=torch.bool) for name, size in sites.items()})


def pooled_stats(model: TransformerBridge, parts: Sequence[Tokens], kinds, mask: Mask) -> NeuronStats:
    """Statistics of every part's counted positions, pooled, on the model without ``mask``."""
    hooks = mask.hooks(model)
    stats = [collect_stats(model, tokens, kinds, fwd_hooks=hooks, token_mask=counted) for tokens, counted in parts]
    return sum(stats[1:], stats[0])


def selective_masks(model: TransformerBridge, task: Task, blank: Mask, sizes: Sequence[int],
                    importance: Importance) -> Iterator[Mask]:
    """The mask at each of ``sizes`` (ascending neuron counts): each step collects statistics without the neurons
    removed so far and adds the best-scoring neurons still present across ``blank``'s sites."""
    kinds = sorted({neuron_site(name)[1] for name in blank.removed})
    eps = {kind: DEFAULT_EPS[kind] for kind in kinds}
    names, widths = list(blank.removed), [m.numel() for m in blank.removed.values()]
    mask = blank
    for size in sizes:
        forget, retain = (pooled_stats(model, parts, kinds, mask) for parts in (task.forget, task.retain))
        scores = by_site(mask.shape, selectivity_scores(forget, retain, importance, eps))
        removed = torch.cat([mask.removed[n] for n in names])
        flat = torch.cat([scores[n] for n in names])
        added = top_unpruned(flat[None], removed[None], max(size - int(removed.sum()), 0))[0]
        mask = mask | Mask(mask.shape, "neuron", dict(zip(names, added.split(widths))))
        yield mask


def learned_run(model: TransformerBridge, config: DuelConfig, task: Task, granularity: str, folder: Path,
                progress: bool = True) -> SubnetworkResult:
    """The learned mask of ``task`` and its run's evaluation (a subnetwork run in ``folder``, resumed from its
    checkpoint)."""
    if (folder / "metrics.json").exists():
        return SubnetworkResult.load(folder, model)
    return find_subnetwork(model, config.subnetwork(granularity), folder, data=task.subnetwork_data,
                           progress=progress)


def learned_ranking_masks(model: TransformerBridge, config: DuelConfig, folder: Path,
                          sizes: Sequence[int]) -> Iterator[Mask]:
    """The learned neuron run in ``folder`` read as a ranking: at each of ``sizes``, the neurons with the highest
    final scores across the duel's sites (its checkpoint's), so the learned method meets the others at their sizes.

    The run's own mask is the one its selection rule chose, at the size the sparsity term left; the ranking is the
    order its scores put every neuron in at the end of training."""
    from circuitcut.subnetwork.parametrize import MaskScores
    from circuitcut.subnetwork.run import CHECKPOINT

    sub = config.subnetwork()
    scores = MaskScores(sub.sites(model), sub.init_p)
    scores.load_state_dict(torch.load(folder / CHECKPOINT, map_location="cpu", weights_only=False)["scores"])
    blank = blank_mask(model, config)
    names, widths = list(blank.removed), [m.numel() for m in blank.removed.values()]
    by_name = dict(scores.items())
    flat = torch.cat([by_name[n].detach().flatten() for n in names])
    for size in sizes:
        chosen = torch.zeros(flat.numel(), dtype=torch.bool)
        chosen[flat.topk(min(size, flat.numel())).indices] = True
        yield Mask(blank.shape, "neuron", dict(zip(names, (c.reshape(blank.removed[n].shape) for c, n in
                                                           zip(chosen.split(widths), names)))))


def greedy_curve(model: TransformerBridge, config: DuelConfig, task: Task) -> Iterator[Mask]:
    """Greedy selection's mask after each step, on the task's training data."""
    return greedy_masks(model, config.subnetwork(), task.subnetwork_data, control_weight=config.control_weight,
                        steps=config.greedy_steps, per_step=config.greedy_per_step,
                        candidates=config.greedy_candidates)

"""The duel's two tasks, each as the data every method reads and the one evaluation every mask gets.

* **knowledge**: forget the target facts (:class:`~circuitcut.subnetwork.SubnetworkData` of a subnetwork run);
  selective pruning's statistics are taken on the target facts' prompts and tails (forget) and on the control
  facts and ControlLM text (retain); every mask is evaluated as learned masks are
  (:func:`~circuitcut.subnetwork.evaluation.evaluate_subnetwork`).
* **corpus**: forget one corpus, retain another (:class:`~circuitcut.pruning.PruningData`, as ``circuitcut
  prune``); every mask is evaluated by its top-1 drops on both evaluation splits and selectivity, their
  difference (docs/metrics.md). The subnetwork trainer and greedy selection read the same windows as facts
  (:func:`windows_as_facts`): a row is a window cut at one position, its "tail" the next token, so the
  suppression term pushes forget tokens down and the maintenance terms keep retain predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Bool, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.data.kg import KGBatch, collate
from circuitcut.evaluate import evaluate_tokens
from circuitcut.masks import Mask
from circuitcut.pruning import PruningData
from circuitcut.pruning.report import drop
from circuitcut.subnetwork.data import SubnetworkData
from circuitcut.subnetwork.evaluation import evaluate_model, evaluate_subnetwork

TaskName = Literal["knowledge", "corpus"]
TASKS: tuple[TaskName, ...] = ("knowledge", "corpus")

Tokens = tuple[Int[Tensor, "n pos"], Bool[Tensor, "n pos"] | None]
"""Sequences and the positions whose activations count (``None``: every position)."""


def windows_as_facts(windows: Int[Tensor, "n window"], *, seed: int, min_context: int = 4) -> KGBatch:
    """One row per window: the window up to a seeded position as the prompt, the token there as the tail."""
    gen = torch.Generator().manual_seed(seed)
    cuts = torch.randint(min_context, windows.shape[1], (len(windows),), generator=gen).tolist()
    return collate([(w[:cut].tolist(), [int(w[cut])]) for w, cut in zip(windows, cuts)])


def corpus_subnetwork_data(data: PruningData, seed: int) -> SubnetworkData:
    """The corpus task as the subnetwork trainer reads it: forget windows as target facts (even windows train, odd
    ones validate), retain windows split in thirds: control facts, ControlLM text, and validation facts and text.

    Nothing is evaluated here (the duel evaluates by selectivity on the evaluation splits)."""
    retain = data.retain_stats
    return SubnetworkData(
        target=windows_as_facts(data.forget_stats[0::2], seed=seed),
        control=windows_as_facts(retain[0::3], seed=seed),
        lm=retain[1::3],
        val_kg={"target": windows_as_facts(data.forget_stats[1::2], seed=seed + 1),
                "control": windows_as_facts(retain[2::3], seed=seed + 1)},
        val_lm=retain[2::3],
    )


@dataclass
class Task:
    """What every method reads on one task, and the evaluation every mask of it gets."""

    name: TaskName
    subnetwork_data: SubnetworkData
    """What learned masks train on and greedy selection selects on."""
    forget: Sequence[Tokens]
    """Where selective pruning's forget statistics are taken."""
    retain: Sequence[Tokens]
    """Where its retain statistics are taken (all parts pooled)."""
    pruning_data: PruningData | None = None
    """The corpus task's windows (evaluation splits: selectivity)."""

    @classmethod
    def knowledge(cls, data: SubnetworkData) -> Task:
        return cls("knowledge", data, [_facts(data.target)], [_facts(data.control), (data.lm, None)])

    @classmethod
    def corpus(cls, data: PruningData, seed: int) -> Task:
        return cls("corpus", corpus_subnetwork_data(data, seed), [(data.forget_stats, None)],
                   [(data.retain_stats, None)], data)

    def sequences(self) -> list[Int[Tensor, "n pos"]]:
        """Every token tensor the task's evaluations feed the model (what a frozen prefix may hold)."""
        evaluation = [self.pruning_data.forget_eval, self.pruning_data.retain_eval] if self.pruning_data else []
        return self.subnetwork_data.sequences() + evaluation

    def original(self, model: TransformerBridge) -> dict:
        """The unmasked model's metrics, measured once and passed to every :meth:`evaluate`."""
        if self.pruning_data is None:
            return evaluate_model(model, self.subnetwork_data)
        return {"forget": evaluate_tokens(model, self.pruning_data.forget_eval).to_dict(),
                "retain": evaluate_tokens(model, self.pruning_data.retain_eval).to_dict()}

    def evaluate(self, model: TransformerBridge, mask: Mask, original: dict, random_seeds: int,
                 metrics: dict | None = None) -> dict:
        """One point of a method's curve: the mask's size and damage, beside random masks of its size per site.

        ``target`` and ``control`` are the damage to what is forgotten and to what is kept: whole-tail dPPL of
        TargetKG and of never-seen ControlKG (knowledge), top-1 drops of the forget and retain evaluation splits
        (corpus); ``random_target`` and ``random_control``, their means over the random masks. ``metrics``: a learned
        run's own evaluation of ``mask`` on this task's data (knowledge), read instead of evaluating it again."""
        point = {"units": mask.n_removed(), "granularity": mask.granularity}
        if self.pruning_data is None:
            metrics = metrics or evaluate_subnetwork(model, mask, self.subnetwork_data, random_seeds=random_seeds,
                                                     original=original)
            change, rand = metrics["change"], metrics["random"]["change"]
            point |= {"target": change["target"]["dppl"], "control": change["control_new"]["dppl"],
                      "lm": change["lm"]["dppl"],
                      "paraphrase": change.get("target_paraphrase", {}).get("dppl"),
                      "target_top10": metrics["remaining"]["target"]["top10"],
                      "random_target": rand["target"]["dppl"]["mean"],
                      "random_control": rand["control_new"]["dppl"]["mean"]}
            return point
        own = self._drops(model, mask, original)
        randoms = [self._drops(model, mask.random_like(seed), original) for seed in range(random_seeds)]
        point |= {"target": own[0], "control": own[1], "selectivity": own[0] - own[1]}
        if randoms:
            point |= {"random_target": sum(r[0] for r in randoms) / len(randoms),
                      "random_control": sum(r[1] for r in randoms) / len(randoms)}
        return point

    def _drops(self, model: TransformerBridge, mask: Mask, original: dict) -> tuple[float, float]:
        """Top-1 drops (percent of the original) of the forget and retain evaluation splits without ``mask``."""
        with mask.remaining(model):
            after = [evaluate_tokens(model, tokens).top1
                     for tokens in (self.pruning_data.forget_eval, self.pruning_data.retain_eval)]
        return drop(original["forget"]["top1"], after[0]), drop(original["retain"]["top1"], after[1])


def _facts(batch: KGBatch) -> Tokens:
    """A fact batch's tokens and the positions its prompts and tails fill (not the padding)."""
    return batch.tokens, batch.attention_mask.bool()

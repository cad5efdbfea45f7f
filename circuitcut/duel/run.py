"""One call runs every method on every task into a run folder; a finished cell is loaded, not recomputed.

The folder holds ``config.json`` (the :class:`~circuitcut.duel.config.DuelConfig`, with the provenance of each
start), ``knowledge/kg.pt`` (the scored facts), and one subfolder per task and method (``corpus/selective``
...) with a mask file per point and ``points.json``, written last: a cell with it is finished. A learned
mask's cell is a subnetwork run folder (checkpointed, so an interrupted training resumes).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.duel.config import DuelConfig
from circuitcut.duel.methods import blank_mask, greedy_curve, learned_ranking_masks, learned_run, selective_masks
from circuitcut.duel.tasks import TASKS, Task
from circuitcut.masks import Mask
from circuitcut.pruning import PruningConfig, PruningData
from circuitcut.runs import check_same_settings, read_json, write_config, write_json
from circuitcut.sites import ModelShape
from circuitcut.subnetwork.data import SubnetworkData
from circuitcut.subnetwork.prefix import FrozenPrefix
from circuitcut.subnetwork.run import run_data

METHODS = ("learned", "learned_weights", "selective", "learned_ranked", "greedy")
"""The cells of each task, in the order they run (selective pruning's sizes, and the learned neuron run's ranking's,
include the learned mask's)."""


@dataclass
class DuelResult:
    """Every point of every method on every task: ``points[task][method]``, a list of dicts
    (:meth:`~circuitcut.duel.tasks.Task.evaluate`), and the config."""

    config: DuelConfig
    points: dict[str, dict[str, list[dict]]]

    @classmethod
    def load(cls, folder: str | Path) -> DuelResult:
        """Read the finished cells of a duel folder."""
        folder = Path(folder)
        points = {task: {m: read_json(folder / task / m / "points.json") for m in METHODS
                         if (folder / task / m / "points.json").exists()} for task in TASKS}
        return cls(DuelConfig.from_dict(read_json(folder / "config.json")), points)


def corpus_data(model: TransformerBridge, config: DuelConfig) -> PruningData:
    """The corpus task's windows, as ``circuitcut prune`` reads them."""
    pruning = PruningConfig(forget=config.forget, retain=config.retain, tokens=config.corpus_tokens,
                            window=config.corpus_window, seed=config.seed)
    return PruningData.from_config(model.tokenizer, pruning)


def run_duel(
    model: TransformerBridge,
    config: DuelConfig,
    out_dir: str | Path,
    *,
    knowledge: SubnetworkData | None = None,
    corpus: PruningData | None = None,
    progress: bool = True,
) -> DuelResult:
    """Run every method on both tasks into ``out_dir``, resuming a folder of the same config.

    ``knowledge`` and ``corpus`` replace the data built from the config (custom facts or windows).
    """
    folder = Path(out_dir)
    settings = json.loads(json.dumps({**config.to_dict(), "model": ModelShape.of(model).name}))  # as read back
    if (folder / "config.json").exists():
        check_same_settings(folder, read_json(folder / "config.json"), settings)
    write_config(folder / "config.json", settings)
    if knowledge is None:
        knowledge = run_data(model, config.subnetwork(), folder / "knowledge")
    tasks = [Task.knowledge(knowledge), Task.corpus(corpus if corpus is not None else corpus_data(model, config),
                                                    config.seed)]
    for task in tasks:
        _run_task(model, config, task, folder / task.name, progress)
    return DuelResult.load(folder)


def _run_task(model: TransformerBridge, config: DuelConfig, task: Task, folder: Path, progress: bool) -> None:
    methods = [m for m in METHODS if m != "learned_weights" or config.weight_masks]
    if all((folder / m / "points.json").exists() for m in methods):
        return
    # Every method removes units of the duel's layers only: below the first, each evaluation and statistic
    # is the original model on the task's sequences, run once here (as a subnetwork run does).
    first = min(config.subnetwork().resolved_layers(ModelShape.of(model)))
    prefix = FrozenPrefix.of(model, first, task.sequences())
    with prefix.active():
        original = task.original(model)

    def cell(method: str, masks: Callable[[], Iterable[Mask]], metrics: dict | None = None) -> None:
        """``metrics``: a learned run's evaluation of its one mask (its random masks have the duel's seeds)."""
        if (folder / method / "points.json").exists():
            return
        points = []
        with prefix.active():  # not around learned masks' training, which runs a prefix of its own
            for mask in tqdm(masks(), desc=f"{task.name}: {method}", disable=not progress, leave=False):
                points.append(task.evaluate(model, mask, original, config.random_seeds, metrics))
                mask.save(folder / method / f"mask_{mask.n_removed()}.safetensors",
                          {"method": method, "task": task.name})
        write_json(folder / method / "points.json", points)

    learned = learned_run(model, config, task, "neuron", folder / "learned", progress)
    cell("learned", lambda: [learned.mask], learned.metrics)
    if config.weight_masks:
        weights = learned_run(model, config, task, "weight", folder / "learned_weights", progress)
        cell("learned_weights", lambda: [weights.mask], weights.metrics)
    sizes = sorted({*config.sizes, learned.mask.n_removed()} - {0})
    cell("selective", lambda: selective_masks(model, task, blank_mask(model, config), sizes, config.importance))
    cell("learned_ranked", lambda: learned_ranking_masks(model, config, folder / "learned", sizes))
    cell("greedy", lambda: greedy_curve(model, config, task))

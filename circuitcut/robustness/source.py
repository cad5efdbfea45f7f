"""Finished run folders as removals: a selective-pruning run at one step, or a learned subnetwork.

:func:`open_run` reads only small files and refuses, before any model runs, a folder that holds
no run, a run that has not finished, or (with ``model``) a run made on another model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.data.kg import KGBatch
from circuitcut.masks import Mask
from circuitcut.pruning import PruningConfig, PruningResult
from circuitcut.robustness.removal import Removal
from circuitcut.runs import read_json
from circuitcut.subnetwork import SubnetworkConfig, SubnetworkResult

KG_FILE = "kg.pt"
"""The encoded facts a subnetwork run folder keeps (``{"key": ..., "kg": {"eval_kg": ...}}``)."""


@dataclass
class PruneRun:
    """A finished selective-pruning run, read at one step: its mask and the random mask of that step."""

    folder: Path
    config: PruningConfig
    step: int
    selective: Mask
    random: Mask

    @property
    def kind(self) -> str:
        return "prune"

    def removals(self, seed: int = 0) -> list[Removal]:
        """Selective and random removal of the same size (the run's own baseline at that step)."""
        return [Removal("selective", self.selective), Removal("random", self.random)]

    def check_model(self, model: TransformerBridge) -> None:
        self.selective.check_model(model)

    def describe(self) -> dict:
        return {"kind": self.kind, "folder": str(self.folder), "model": self.selective.shape.name,
                "step": self.step, "fraction": self.selective.fraction(), "forget": self.config.forget,
                "retain": self.config.retain}


@dataclass
class SubnetRun:
    """A finished subnetwork run: its mask, config and evaluation facts."""

    folder: Path
    config: SubnetworkConfig
    mask: Mask
    eval_kg: dict[str, KGBatch]

    @property
    def kind(self) -> str:
        return "subnet"

    def removals(self, seed: int = 0) -> list[Removal]:
        """The learned subnetwork and a random mask with as many units per site."""
        return [Removal("learned", self.mask), Removal("random", self.mask.random_like(seed))]

    def check_model(self, model: TransformerBridge) -> None:
        self.mask.check_model(model)

    def describe(self) -> dict:
        return {"kind": self.kind, "folder": str(self.folder), "model": self.mask.shape.name,
                "target": self.config.target, "sparsity": self.mask.sparsity(),
                "granularity": self.mask.granularity}


def open_run(folder: str | Path, model: TransformerBridge | None = None, step: int | None = None) -> PruneRun | SubnetRun:
    """A finished prune or subnet run folder; ``step`` picks a pruning step (default: best selectivity)."""
    folder = Path(folder)
    if (folder / "history.json").exists() or (folder / "importance.safetensors").exists():
        run = _prune_run(folder, step)
    elif (folder / "config.json").exists() and "target" in read_json(folder / "config.json"):
        if step is not None:
            raise ValueError(f"{folder} is a subnetwork run, which has no steps: leave out --step.")
        run = _subnet_run(folder)
    else:
        raise ValueError(
            f"{folder} holds no circuitcut prune or subnet run (no history.json, no config.json with a target): "
            f"pass the --out folder of 'circuitcut prune' or 'circuitcut subnet'."
        )
    if model is not None:
        run.check_model(model)
    return run


def _prune_run(folder: Path, step: int | None) -> PruneRun:
    config = PruningConfig.from_dict(read_json(folder / "config.json"))
    history = read_json(folder / "history.json") if (folder / "history.json").exists() else []
    if not config.baseline:
        raise ValueError(f"{folder} was pruned without the random baseline, which relearning compares against: "
                         f"run 'circuitcut prune' again with --baseline random.")
    done = {m: max((h["step"] for h in history if h["method"] == m), default=0) for m in ("selective", "random")}
    unfinished = {m: s for m, s in done.items() if s < config.steps}
    if unfinished:
        raise RuntimeError(
            f"{folder} has not finished: {', '.join(f'{m} at step {s} of {config.steps}' for m, s in unfinished.items())}. "
            f"Finish it with 'circuitcut prune ... --out {folder} --resume' first."
        )
    if step is None:
        step = PruningResult(config, history, {}).selectivity("selective")["step"]
    if not 1 <= step <= config.steps:
        raise ValueError(f"step={step}: {folder} has pruning steps 1-{config.steps}.")
    masks = {m: Mask.load(folder / "steps" / f"{m}_{step:03d}.safetensors") for m in ("selective", "random")}
    return PruneRun(folder, config, step, masks["selective"], masks["random"])


def _subnet_run(folder: Path) -> SubnetRun:
    if not (folder / "metrics.json").exists():
        raise RuntimeError(f"{folder} has not finished (no metrics.json): run 'circuitcut subnet ... --out {folder}' "
                           f"again to resume it.")
    if not (folder / KG_FILE).exists():
        raise ValueError(f"{folder} holds no {KG_FILE} (its facts were given in code, not built from its "
                                f"target): relearning needs the run's evaluation facts there.")
    result = SubnetworkResult.load(folder)
    eval_kg = torch.load(folder / KG_FILE, weights_only=False)["kg"]["eval_kg"]
    return SubnetRun(folder, result.config, result.mask, eval_kg)

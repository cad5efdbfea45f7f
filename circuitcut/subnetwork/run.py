"""One call finds a subnetwork: data, training, the selection rule's mask, evaluation, a run folder.

A run folder holds ``config.json`` (with the provenance of each start), ``facts.json``, ``kg.pt`` (the
scored facts, reused by runs with the same KG settings), ``checkpoint.pt`` while training, and at the end
``mask.safetensors`` and ``metrics.json`` (written last: a folder with it holds a finished run).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.masks import Mask
from circuitcut.memory import peak_rss_mb, release_freed_memory
from circuitcut.runs import atomic_path, provenance, read_json, write_config, write_json
from circuitcut.sites import ModelShape
from circuitcut.special_tokens import window_prefix
from circuitcut.subnetwork.config import SubnetworkConfig, check_same_config, saved_config
from circuitcut.subnetwork.data import SubnetworkData, build_data, build_kg
from circuitcut.subnetwork.evaluation import evaluate_subnetwork
from circuitcut.subnetwork.report import report_frame
from circuitcut.subnetwork.trainer import SubnetworkTrainer

if TYPE_CHECKING:
    import pandas as pd

CHECKPOINT = "checkpoint.pt"
KG_DATA = "kg.pt"


@dataclass
class SubnetworkResult:
    """A found subnetwork: its mask, config, training history and evaluation (``metrics``)."""

    config: SubnetworkConfig
    mask: Mask
    history: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)

    def save(self, folder: str | Path, start: Mapping | None = None) -> Path:
        """Write config.json, mask.safetensors and metrics.json (history included), each atomically.

        ``start``: the provenance of the run's start, when it wrote config.json already (see
        :func:`~circuitcut.runs.write_config`); by default this save's own is recorded.
        """
        folder = Path(folder)
        write_config(folder / "config.json", self.config.to_dict(), start)
        self.mask.save(folder / "mask.safetensors", {"target": self.config.target})
        write_json(folder / "metrics.json", {**self.metrics, "history": self.history})
        return folder

    @classmethod
    def load(cls, folder: str | Path, model: TransformerBridge | None = None) -> SubnetworkResult:
        """Read a saved result; with ``model``, refuse it unless the mask was found on that model."""
        folder = Path(folder)
        if not (folder / "mask.safetensors").exists():
            raise FileNotFoundError(f"{folder} holds no subnetwork result (mask.safetensors is missing).")
        metrics = read_json(folder / "metrics.json") if (folder / "metrics.json").exists() else {}
        history = metrics.pop("history", [])
        return cls(saved_config(folder), Mask.load(folder / "mask.safetensors", model), history, metrics)

    def to_frame(self) -> pd.DataFrame:
        """The report's table as a pandas DataFrame, one row per dataset
        (columns: :func:`~circuitcut.subnetwork.report.report_rows`)."""
        return report_frame(self.metrics)


def find_subnetwork(
    model: TransformerBridge,
    config: SubnetworkConfig | None = None,
    out_dir: str | Path | None = None,
    *,
    progress: bool = True,
    data: SubnetworkData | None = None,
) -> SubnetworkResult:
    """Find, evaluate (against random masks) and save a knowledge-critical subnetwork: one call does all.

    With ``out_dir`` the run checkpoints there and, started again with the same config, resumes; a
    finished run with the same config (and no ``data`` override) is loaded, not evaluated again.
    ``data`` overrides the data built from ``config.target`` (custom facts or windows).

    Example:
        >>> result = find_subnetwork(model, SubnetworkConfig(target="isa:animal"), "runs/animal")
        >>> result.metrics["change"]["target"]["dppl"], result.mask.sparsity()
        >>> with result.mask.remaining(model):
        ...     model.generate("A dog is a kind of")
    """
    config = config or SubnetworkConfig()
    started = time.perf_counter()
    folder = Path(out_dir) if out_dir is not None else None
    if folder is not None:
        check_same_config(saved_config(folder), config, folder)
        if data is None and (folder / "metrics.json").exists():  # metrics.json is written last
            return SubnetworkResult.load(folder, model)
    # taken once a run really starts (a finished one only loads), and recorded once by both writes of config.json
    start = provenance() if folder is not None else None
    if data is None:
        data = run_data(model, config, folder)
    data.check()
    prepared = time.perf_counter()
    if folder is not None:
        write_config(folder / "config.json", config.to_dict(), start)
        write_json(folder / "facts.json", data.facts)
    trainer = SubnetworkTrainer(model, config, data, folder / CHECKPOINT if folder is not None else None)
    trainer.train(progress=progress)
    trained = time.perf_counter()
    mask = Mask(ModelShape.of(model), config.granularity, trainer.final_mask())
    prefix, history, seconds, steps = trainer.frozen_prefix(), trainer.history, trainer.seconds, trainer.step
    selection = {**trainer.selector.summary(), "steps_run": steps, "stopped_early": trainer.stopped}
    del trainer  # its scores and Adam moments (636 MB for a weight run) are not needed to evaluate
    release_freed_memory()  # ... and their pages go back before the evaluation's logits are allocated
    with prefix.active():
        metrics = evaluate_subnetwork(model, mask, data, random_seeds=config.random_seeds)
    metrics["target"] = config.target
    metrics["selection"] = selection
    metrics["prefix"] = {"layer": prefix.layer, "used": prefix.enabled, "megabytes": prefix.megabytes}
    metrics["n_facts"] = {name: len(batch) for name, batch in data.eval_kg.items()}
    metrics["seconds"] = {
        "data": prepared - started,
        "train": seconds,  # every start of a resumed run
        "evaluate": time.perf_counter() - trained,
        "per_step": seconds / max(steps, 1),
    }
    metrics["peak_rss_mb"] = peak_rss_mb()  # the process's, so it counts whatever the process did before this run
    result = SubnetworkResult(config, mask, history, metrics)
    if folder is not None:
        result.save(folder, start)
    return result


def run_data(model: TransformerBridge, config: SubnetworkConfig, folder: Path | None) -> SubnetworkData:
    """The run's data; the KG facts are reloaded from the folder when built with the same KG settings.

    Scoring candidate facts takes minutes; training and ControlLM settings do not change them.
    """
    if folder is None:
        return build_data(model, config)
    # The prompts' special tokens decide the encoded facts as much as the config does.
    path, key = folder / KG_DATA, {**config.kg_key(), "prompt_prefix": window_prefix(model.tokenizer)}
    saved = torch.load(path, weights_only=False) if path.exists() else None
    if saved is not None and saved["key"] == key:
        return build_data(model, config, saved["kg"])
    parts = build_kg(model, config)
    with atomic_path(path) as tmp:
        torch.save({"key": key, "kg": parts}, tmp)
    return build_data(model, config, parts)

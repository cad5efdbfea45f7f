"""Discovery for a list of targets: one resumable subnetwork run folder per target, granularity and seed.

Each run is :func:`~circuitcut.subnetwork.run.find_subnetwork` in ``OUT/<run name>``: a finished folder is
kept, an interrupted one resumes from its checkpoint, so the same command run again continues a build. On a
CPU, ``workers`` runs go at a time, each in its own process on one torch thread (a run's matrices are too
small to share two threads well; two runs keep two cores busy); on CUDA they go one by one on the GPU.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING

from circuitcut.atlas.config import AtlasConfig, run_config, run_name
from circuitcut.runs import check_out_folder

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from circuitcut.subnetwork.config import SubnetworkConfig
    from circuitcut.subnetwork.data import SubnetworkData

DataFor = Callable[["TransformerBridge", "SubnetworkConfig"], "SubnetworkData"]
"""Builds a run's data instead of its target's facts (tests, custom facts); must pickle for worker processes."""

_WORKER: dict = {}
"""The model of a worker process, loaded once by :func:`_start_worker`."""


def planned_runs(config: AtlasConfig, out_dir: str | Path, overrides: dict | None = None) -> dict[Path, SubnetworkConfig]:
    """Each run's folder and config; refuses, before anything runs, a target WordNet lacks or a folder that
    holds a run of other settings."""
    from circuitcut.subnetwork.config import check_same_config, saved_config
    from circuitcut.subnetwork.data import check_target

    out = check_out_folder(out_dir)
    plan = {}
    for target, granularity, seed in config.runs():
        cfg = run_config(target, granularity, seed, config.data_seed, **(overrides or {}))
        check_target(cfg)
        folder = out / run_name(target, granularity, seed)
        check_same_config(saved_config(folder), cfg, folder)
        plan[folder] = cfg
    return plan


def build_atlas(
    config: AtlasConfig,
    out_dir: str | Path,
    *,
    model: TransformerBridge | None = None,
    model_name: str = "smollm2",
    device: str | None = None,
    overrides: dict | None = None,
    data: DataFor | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Run every target of ``config`` that ``out_dir`` does not hold finished; returns each run's folder by name.

    ``model``: run in this process on it, one by one; otherwise each worker process loads ``model_name``
    (on CUDA, when present or asked for by ``device``, this process runs them one by one). ``overrides``:
    :class:`~circuitcut.subnetwork.config.SubnetworkConfig` fields laid over every run's preset. A run that
    fails does not stop the others; the build then raises, naming each, and a rerun retries them.
    """
    from tqdm.auto import tqdm

    plan = planned_runs(config, out_dir, overrides)
    todo = {folder: cfg for folder, cfg in plan.items() if not (folder / "metrics.json").exists()}
    bar = tqdm(total=len(plan), initial=len(plan) - len(todo), desc="atlas runs", unit="run", disable=not progress)
    failed: dict[str, str] = {}
    if todo and (model is not None or config.workers == 1 or _cuda(device)):
        if model is None:
            from circuitcut.models import load_model

            model = load_model(model_name, device=device)
        for folder, cfg in todo.items():
            _record(failed, folder, lambda: _run(model, cfg, folder, data))
            bar.update()
    elif todo:
        spawn = multiprocessing.get_context("spawn")  # a fork would copy this process's torch threads and state
        with ProcessPoolExecutor(min(config.workers, len(todo)), mp_context=spawn, initializer=_start_worker,
                                 initargs=(model_name, device)) as pool:
            jobs = {pool.submit(_run_in_worker, cfg.to_dict(), str(folder), data): folder for folder, cfg in todo.items()}
            for job in as_completed(jobs):
                _record(failed, jobs[job], job.result)
                bar.update()
    bar.close()
    if failed:
        lines = "; ".join(f"{name}: {error}" for name, error in failed.items())
        raise RuntimeError(f"{len(failed)} of {len(plan)} atlas runs failed ({lines}). The finished ones are kept: "
                           "fix the cause and run the same command again to retry the others.")
    return {folder.name: folder for folder in plan}


def _cuda(device: str | None) -> bool:
    if device is not None:
        return device.startswith("cuda")
    import torch

    return torch.cuda.is_available()


def _record(failed: dict[str, str], folder: Path, call: Callable) -> None:
    try:
        call()
    except Exception as err:  # noqa: BLE001 - one failed run must not stop hours of others
        failed[folder.name] = f"{type(err).__name__}: {err}"


def _run(model: TransformerBridge, cfg: SubnetworkConfig, folder: Path, data: DataFor | None) -> None:
    from circuitcut.subnetwork.run import find_subnetwork

    find_subnetwork(model, cfg, folder, progress=False, data=data(model, cfg) if data is not None else None)


def _start_worker(model_name: str, device: str | None) -> None:
    import torch

    from circuitcut.models import load_model

    torch.set_num_threads(1)
    _WORKER["model"] = load_model(model_name, device=device or "cpu")


def _run_in_worker(config: dict, folder: str, data: DataFor | None) -> None:
    from circuitcut.subnetwork.config import SubnetworkConfig

    _run(_WORKER["model"], SubnetworkConfig.from_dict(config), Path(folder), data)

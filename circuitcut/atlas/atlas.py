"""A packed atlas of knowledge-critical subnetworks, read back: :func:`load` returns an :class:`Atlas`.

Loading reads the index and checks the masks file's checksum; it imports neither torch nor a model, so it takes
well under the time a model takes to load. A mask is read from the masks file when it is asked for.

Example:
    >>> atlas = circuitcut.atlas.load()
    >>> atlas.targets                                   # ['isa:animal.n.01', ...]
    >>> print(atlas.report("isa:food.n.01"))            # the run's table, as `circuitcut subnet` prints it
    >>> atlas.comparisons().excess()                    # cross-criticality across targets
    >>> atlas.to_frame()                                # one row per run
    >>> with atlas.mask("isa:food.n.01").remaining(model):   # refuses a model of another shape
    ...     model.generate("An apple is a kind of")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from circuitcut.atlas.config import run_name
from circuitcut.atlas.store import MASKS, AtlasError, default_dir, read_runs

if TYPE_CHECKING:
    import pandas as pd
    from transformer_lens.model_bridge import TransformerBridge

    from circuitcut.atlas.findings import Comparisons
    from circuitcut.masks import Mask


@dataclass
class Atlas:
    """Subnetwork runs by name (:func:`~circuitcut.atlas.config.run_name`), as the atlas index holds them
    (:mod:`circuitcut.atlas.store`), with the folder their masks are read from."""

    folder: Path
    index: dict

    @property
    def runs(self) -> dict[str, dict]:
        return self.index["runs"]

    @property
    def targets(self) -> list[str]:
        """Every target the atlas holds, in the order packed."""
        return list(dict.fromkeys(run["target"] for run in self.runs.values()))

    def target(self, target: str) -> str:
        """The atlas's name for ``target`` (``isa:food.n.01``; ``food.n.01`` is the same)."""
        wanted = target if ":" in target else f"isa:{target}"
        if wanted not in self.targets:
            raise AtlasError(f"{target!r} is not in the atlas {self.folder}; it holds {', '.join(self.targets)}. "
                             f"To add it: `circuitcut atlas build --targets {wanted} --out DIR`, then pack DIR.")
        return wanted

    def run(self, target: str, granularity: str = "weight", seed: int = 0) -> dict:
        """One run's entry: target, granularity, seed, config, provenance, metrics, facts, sites."""
        target = self.target(target)
        name = run_name(target, granularity, seed)
        if name not in self.runs:
            held = ", ".join(f"{r['granularity']} seed {r['seed']}" for r in self.runs.values() if r["target"] == target)
            raise AtlasError(f"The atlas holds {target} as {held}, not {granularity} seed {seed}: ask for one of those.")
        return self.runs[name]

    def report(self, target: str, granularity: str = "weight", seed: int = 0) -> str:
        """The run's report table (:func:`~circuitcut.subnetwork.report.format_report`)."""
        from circuitcut.subnetwork.report import format_report

        return format_report(self.run(target, granularity, seed)["metrics"])

    def mask(self, target: str, granularity: str = "weight", seed: int = 0,
             model: TransformerBridge | None = None) -> Mask:
        """The run's mask; with ``model``, refused unless it was found on that model (applying it checks too)."""
        import torch
        from safetensors import safe_open

        from circuitcut.masks import Mask
        from circuitcut.sites import ModelShape

        run = self.run(target, granularity, seed)
        name = run_name(run["target"], granularity, seed)
        removed = {}
        with safe_open(str(self.folder / MASKS), "pt") as f:
            keys = set(f.keys())
            for site, shape in run["sites"].items():
                flat = torch.zeros(torch.Size(shape).numel(), dtype=torch.bool)
                if f"{name}/{site}" in keys:
                    flat[f.get_tensor(f"{name}/{site}").long()] = True
                removed[site] = flat.reshape(shape)
        mask = Mask(ModelShape(**self.index["model_shape"]), granularity, removed)  # type: ignore[arg-type]
        if model is not None:
            mask.check_model(model)
        return mask

    def facts(self, target: str, granularity: str = "weight", seed: int = 0, dataset: str = "target") -> list[str]:
        """The run's facts of one dataset (``target``, ``control``, ``control_val``, ``control_new``), each
        ``prompt|tail (rank r, ppl p)`` as facts.json holds them."""
        return self.run(target, granularity, seed)["facts"].get(dataset, [])

    def comparisons(self, granularity: str = "weight", seed: int = 0) -> Comparisons:
        """The comparisons across targets of one granularity and seed's masks, shipped beside the atlas
        (``circuitcut atlas compare``): Jaccard, containment, cross-criticality, unions, neuron contexts
        (:class:`~circuitcut.atlas.findings.Comparisons`). Comparisons of other targets than the atlas now holds
        under that granularity and seed (it was packed again since) are refused, naming the fix."""
        from circuitcut.atlas.compare import targets_of
        from circuitcut.atlas.findings import Comparisons

        found = Comparisons.load(self.folder, granularity, seed)
        held = targets_of(self, None, granularity, seed)
        if sorted(found.jaccard.index) != sorted(held):
            raise AtlasError(f"The comparisons of {granularity} masks under seed {seed} in {self.folder} cover "
                             f"{len(found.jaccard)} targets, the atlas {len(held)} (it was packed again since): "
                             f"compute them again with `circuitcut atlas compare --atlas {self.folder} --granularity "
                             f"{granularity} --seed {seed}`.")
        return found

    def to_frame(self) -> pd.DataFrame:
        """One row per run: ``target``, ``granularity``, ``seed``, ``units`` (in the subnetwork), ``sparsity``;
        per dataset ``dppl_<dataset>`` (whole tail), ``dppl_random_<dataset>`` (random masks' mean) and
        ``top10_<dataset>`` (remaining model, %); ``goals_missed`` (:func:`~circuitcut.subnetwork.goals.missed_goals`)
        and ``bounds_met`` (none missed)."""
        import pandas as pd

        from circuitcut.subnetwork.goals import missed_goals

        rows = []
        for run in self.runs.values():
            m = run["metrics"]
            row = {"target": run["target"], "granularity": run["granularity"], "seed": run["seed"],
                   "units": m["size"]["n_subnetwork"], "sparsity": m["sparsity"]}
            for name, change in m["change"].items():
                row[f"dppl_{name}"] = change["dppl"]
                row[f"dppl_random_{name}"] = m["random"]["change"].get(name, {}).get("dppl", {}).get("mean")
                row[f"top10_{name}"] = m["remaining"][name]["top10"]
            missed = missed_goals(m)
            rows.append({**row, "goals_missed": ", ".join(missed), "bounds_met": not missed})
        return pd.DataFrame(rows)


def load(path: str | Path | None = None) -> Atlas:
    """The atlas in folder ``path`` (default: the one shipped with circuitcut); a damaged or missing file is
    named with the fix."""
    folder = Path(path) if path is not None else default_dir()
    return Atlas(folder, read_runs(folder))

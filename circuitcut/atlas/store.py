"""The atlas file format: finished subnetwork run folders packed into two files, and read back.

``atlas.safetensors``
    per run and site, the flat indices (int32, ascending) of the units the mask removes, keyed
    ``<run>/<site>`` (``food.n.01-weight-seed0/blocks.29.mlp.in``); a site that removes nothing has no key.
    A mask removes about 0.001 % of the weights it covers, so its indices take a few kilobytes where the
    dense boolean tensors take 53 MB.
``atlas.json.gz``
    ``format``; ``model_shape`` (the model every mask was found on); ``provenance`` of the pack (circuitcut
    version, date, command; :func:`~circuitcut.runs.provenance`); ``masks_sha256`` (the safetensors file's,
    so a damaged file is named at load); ``runs``: per run name, ``target``, ``granularity``, ``seed``,
    ``config`` (the run's :class:`~circuitcut.subnetwork.config.SubnetworkConfig`), ``provenance`` (each start
    of the run), ``metrics`` (metrics.json without the training history), ``facts`` (facts.json), ``sites``
    (each masked site's shape: the sites with no removed unit too) and ``folder`` (the run folder's name).

Packing needs torch (the masks are read as :class:`~circuitcut.masks.Mask`); reading the JSON does not.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict
from importlib import resources
from pathlib import Path

from circuitcut.atlas.config import run_name
from circuitcut.runs import PROVENANCE, atomic_path, provenance, read_json

MASKS, RUNS = "atlas.safetensors", "atlas.json.gz"
FORMAT = 1
"""The format version :func:`read_runs` reads; a later one is refused with the fix (upgrade circuitcut)."""


class AtlasError(ValueError):
    """An atlas that cannot be read, or a question it cannot answer; the message names the fix."""


def default_dir() -> Path:
    """Where the atlas shipped with circuitcut lies (``circuitcut/atlas/data``)."""
    return Path(str(resources.files("circuitcut.atlas") / "data"))


def finished_runs(runs_dir: str | Path) -> list[Path]:
    """The run folders below ``runs_dir`` that hold a finished run (a metrics.json), by name."""
    return sorted(p.parent for p in Path(runs_dir).glob("*/metrics.json"))


def pack_atlas(run_dirs: Iterable[str | Path], out_dir: str | Path | None = None) -> Path:
    """Pack finished run folders into an atlas in ``out_dir`` (default: the package's, :func:`default_dir`);
    returns ``out_dir``. Every run must be on one model and be a distinct target, granularity and seed."""
    import torch
    from safetensors.torch import save_file

    from circuitcut.subnetwork.run import SubnetworkResult

    out = Path(out_dir) if out_dir is not None else default_dir()
    runs: dict[str, dict] = {}
    tensors: dict[str, torch.Tensor] = {}
    shape = None
    for folder in map(Path, run_dirs):
        result = SubnetworkResult.load(folder)
        config, mask = result.config, result.mask
        if mask.fill != "zero":
            raise AtlasError(f"{folder} holds a {mask.fill}-filled mask; an atlas holds zero-filled ones.")
        if shape is not None and mask.shape != shape:
            raise AtlasError(f"{folder} was run on {mask.shape.name}, the other runs on {shape.name}: pack the runs "
                             "of one model into one atlas.")
        shape, name = mask.shape, run_name(config.target, config.granularity, config.seed)
        if name in runs:
            raise AtlasError(f"{folder} and {runs[name]['folder']} are both {name}: pack one run of each target, "
                             "granularity and seed.")
        for site, m in mask.removed.items():
            if m.any():
                tensors[f"{name}/{site}"] = m.flatten().nonzero().flatten().to(torch.int32)
        metrics = {k: v for k, v in result.metrics.items() if k != "history"}
        facts = read_json(folder / "facts.json") if (folder / "facts.json").exists() else {}
        runs[name] = {"target": config.target, "granularity": config.granularity, "seed": config.seed,
                      "config": config.to_dict(), "provenance": read_json(folder / "config.json").get(PROVENANCE, []),
                      "metrics": metrics, "facts": facts, "folder": folder.name,
                      "sites": {site: list(m.shape) for site, m in mask.removed.items()}}
    if shape is None:
        raise AtlasError("No finished run folders to pack: run `circuitcut atlas build --out DIR` first.")
    with atomic_path(out / MASKS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": str(FORMAT)})
    index = {"format": FORMAT, "model_shape": asdict(shape), "provenance": provenance(),
             "masks_sha256": _sha256(out / MASKS), "runs": runs}
    with atomic_path(out / RUNS) as tmp:
        tmp.write_bytes(gzip.compress(json.dumps(index, separators=(",", ":")).encode(), mtime=0))
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _damaged(path: Path, why: str) -> AtlasError:
    return AtlasError(f"The atlas file {path} is damaged ({why}): rebuild it with `circuitcut atlas pack RUNS_DIR` "
                      "or reinstall circuitcut.")


def read_runs(folder: str | Path) -> dict:
    """The atlas index in ``folder`` (see the module docstring), checked against its masks file."""
    folder = Path(folder)
    index_path, masks_path = folder / RUNS, folder / MASKS
    if not index_path.exists():
        raise AtlasError(f"No atlas in {folder} ({RUNS} is missing): make one with `circuitcut atlas build --out "
                         "DIR` and `circuitcut atlas pack DIR --to FOLDER`, then load(FOLDER).")
    try:
        index = json.loads(gzip.decompress(index_path.read_bytes()))
        runs, expected = index["runs"], index["masks_sha256"]
    except (OSError, EOFError, ValueError, KeyError, TypeError) as err:
        raise _damaged(index_path, f"{type(err).__name__}: {err}") from None
    if index.get("format") != FORMAT:
        raise AtlasError(f"{index_path} has atlas format {index.get('format')}; this circuitcut reads format "
                         f"{FORMAT}: upgrade circuitcut, or rebuild the atlas with this one.")
    if not masks_path.exists():
        raise _damaged(masks_path, "missing")
    if _sha256(masks_path) != expected:
        raise _damaged(masks_path, "its checksum differs from the one recorded at packing")
    if not isinstance(runs, dict):
        raise _damaged(index_path, "no runs")
    return index

"""An atlas of knowledge-critical subnetworks: one run per WordNet IsA family, granularity and seed, packed into
a few megabytes and compared across the hierarchy.

- :mod:`~circuitcut.atlas.targets`: the default families (:data:`DEFAULT_TARGETS`) and :func:`check_targets`;
- :mod:`~circuitcut.atlas.config`: :class:`AtlasConfig` (the ``circuitcut atlas build`` flags);
- :mod:`~circuitcut.atlas.build`: :func:`build_atlas`, the runs, resumable, two at a time on a CPU;
- :mod:`~circuitcut.atlas.store`: the file format, :func:`pack_atlas`;
- :mod:`~circuitcut.atlas.atlas`: :func:`load` and :class:`Atlas` (reports, masks, ``to_frame()``);
- :mod:`~circuitcut.atlas.hierarchy`: targets in WordNet (distance, parents, an order by family);
- :mod:`~circuitcut.atlas.compare`: overlap, containment, rank correlation with WordNet distance;
- :mod:`~circuitcut.atlas.functional`: what removing one family's subnetwork does to another's facts (a model);
- :mod:`~circuitcut.atlas.views`: plotly views.

Example:
    >>> atlas = circuitcut.atlas.load()
    >>> atlas.to_frame()[["target", "units", "dppl_target", "bounds_met"]]

The names are imported on first use, so ``circuitcut.atlas.load()`` imports no torch.
"""

from typing import TYPE_CHECKING

from circuitcut._lazy import lazy_exports

__all__ = ["DEFAULT_TARGETS", "Atlas", "AtlasConfig", "AtlasError", "build_atlas", "check_targets", "load",
           "pack_atlas"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "circuitcut.atlas.atlas": ("Atlas", "load"),
    "circuitcut.atlas.build": ("build_atlas",),
    "circuitcut.atlas.config": ("AtlasConfig",),
    "circuitcut.atlas.store": ("AtlasError", "pack_atlas"),
    "circuitcut.atlas.targets": ("DEFAULT_TARGETS", "check_targets"),
})

if TYPE_CHECKING:  # what type checkers and editors see
    from circuitcut.atlas.atlas import Atlas, load
    from circuitcut.atlas.build import build_atlas
    from circuitcut.atlas.config import AtlasConfig
    from circuitcut.atlas.store import AtlasError, pack_atlas
    from circuitcut.atlas.targets import DEFAULT_TARGETS, check_targets

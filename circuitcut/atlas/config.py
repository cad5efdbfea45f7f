"""What decides an atlas build: :class:`AtlasConfig`, whose fields are the ``circuitcut atlas build`` flags, and
the subnetwork run each target, granularity and seed gets."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from circuitcut.config_args import option
from circuitcut.sites import GRANULARITIES

if TYPE_CHECKING:  # the command line builds its flags from this module before torch is imported
    from circuitcut.subnetwork.config import SubnetworkConfig

FLAG_GROUPS = {"atlas": "which runs the atlas holds and how they run"}
"""The group ``circuitcut atlas build --help`` lists the config's flags in."""

PRESET_OF = {"weight": "weights", "neuron": "default"}
"""The subnetwork preset each granularity's runs take (:data:`~circuitcut.subnetwork.config.PRESETS`)."""


_in = partial(option, "atlas")


@dataclass
class AtlasConfig:
    """Which subnetwork runs an atlas holds: every target at every granularity under every seed."""

    targets: tuple[str, ...] | None = _in(None, "SPEC,...|none")
    """IsA families to run, e.g. isa:animal.n.01,isa:food.n.01; ``None``: the default list.

    The default list is :data:`~circuitcut.atlas.targets.DEFAULT_TARGETS` (``circuitcut atlas targets``)."""
    granularity: tuple[str, ...] = _in(("weight",), "G1,G2")
    """Mask granularities to run: weight (preset weights), neuron (the default settings)."""
    seeds: tuple[int, ...] = _in((0,), "S1,S2")
    """Mask seeds to run for each target and granularity."""
    data_seed: int = _in(0)
    """Seeds which facts every run samples, whatever its mask seed.

    Fixed, so that two seeds of one target learn masks for the same facts (how much of a mask is seed noise)."""
    workers: int = _in(2)
    """Runs at a time on a CPU, each in its own process on one torch thread; on CUDA runs go one by one."""

    def __post_init__(self) -> None:
        if self.targets is not None:
            self.targets = tuple(self.targets)
            if not self.targets:
                raise ValueError("targets is empty: give at least one IsA target, or none for the default list.")
            bad = [t for t in self.targets if not t.startswith("isa:")]
            if bad:
                raise ValueError(f"An atlas maps IsA families: write targets as isa:SYNSET (e.g. isa:{bad[0]}), "
                                 f"not {bad[0]!r}.")
            if len(set(self.targets)) < len(self.targets):
                raise ValueError("targets names a target twice: give each once.")
        self.granularity = tuple(self.granularity)
        unknown = [g for g in self.granularity if g not in GRANULARITIES]
        if unknown or not self.granularity:
            raise ValueError(f"granularity must be one or more of {', '.join(GRANULARITIES)}, got "
                             f"{','.join(self.granularity) or 'nothing'}.")
        self.seeds = tuple(int(s) for s in self.seeds)
        if not self.seeds or any(s < 0 for s in self.seeds):
            raise ValueError(f"seeds must be one or more seeds >= 0, e.g. 0,1; got {self.seeds}.")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1 (runs at a time), got {self.workers}.")

    def target_list(self) -> tuple[str, ...]:
        from circuitcut.atlas.targets import DEFAULT_TARGETS

        return self.targets if self.targets is not None else DEFAULT_TARGETS

    def runs(self) -> list[tuple[str, str, int]]:
        """Every (target, granularity, seed) the atlas holds, target by target."""
        return [(t, g, s) for t in self.target_list() for g in self.granularity for s in self.seeds]


def run_name(target: str, granularity: str, seed: int) -> str:
    """A run's folder name and atlas key: ``food.n.01-weight-seed0``."""
    return f"{target.removeprefix('isa:').replace('/', '_')}-{granularity}-seed{seed}"


def run_config(target: str, granularity: str, seed: int, data_seed: int = 0, **overrides) -> SubnetworkConfig:
    """The subnetwork config of one atlas run: the granularity's preset (:data:`PRESET_OF`) for this target and
    seed, ``overrides`` laid over it."""
    from circuitcut.subnetwork.config import preset

    return preset(PRESET_OF[granularity], target=target, seed=seed, data_seed=data_seed, **overrides)

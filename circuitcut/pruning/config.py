"""The settings of a selective-pruning run: one dataclass whose fields are also ``circuitcut prune``'s flags.

Each field names, in its metadata, the group ``circuitcut prune --help`` lists its flag under
(:data:`FLAG_GROUPS`); :mod:`circuitcut.config_args` makes the flags, so every default is written once,
here. Reading this module imports no torch: the command line builds its parser from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from circuitcut.runs import config_from_dict
from circuitcut.sites import (FILLS, IMPORTANCES, Fill, Importance, ModelShape, SiteKind, UnitKind, check_units,
                              unit_site)

DEFAULT_EPS: dict[UnitKind, float] = {"mlp": 1e-3, "attn_v": 1e-4, "attn_z": 1e-4, "heads": 1e-4}
HeadScore = Literal["median", "mean"]
HEAD_SCORES: tuple[HeadScore, ...] = ("median", "mean")
RUN_SETTINGS = ("model", "dtype", "window_prefix")
"""What ``config.json`` records beside the config (see :func:`~circuitcut.pruning.run.run_settings`)."""
RECORDED_DEFAULTS = {"window_prefix": [], "dtype": "torch.float32", "fill": "zero", "head_score": "median"}
"""What a run folder written before these fields were recorded was made with (windows had no
special tokens; models loaded in float32; removed neurons were zeroed; no heads, so any head score),
so that it still resumes."""

FLAG_GROUPS: dict[str, str] = {
    "data": "the corpora and the token windows statistics and evaluation read",
    "pruning": "which neurons are scored and how many are removed",
    "run": "the run folder, the model, the baseline and bookkeeping",
}
"""The groups ``circuitcut prune --help`` lists its flags in, in this order; each field names its own."""


@dataclass
class PruningConfig:
    """Settings of a selective-pruning run (defaults: a short run on the embedded model)."""

    forget: str = field(default="python", metadata={"group": "data", "metavar": "CORPUS"})
    """Corpus whose capability is removed: a name (``python``, ``code``, ``prose``), ``hf:NAME`` or a path."""
    retain: str = field(default="prose", metadata={"group": "data", "metavar": "CORPUS"})
    """Corpus whose capability is kept."""
    sites: tuple[str, ...] = field(default=("mlp",), metadata={"group": "pruning", "metavar": "K1,K2"})
    """Site kinds to prune: neurons of ``mlp``, ``attn_v``, ``attn_z``, or ``heads``, whole attention heads.

    A head is scored from its ``d_head`` pre-out (``attn_z``) neurons' scores (``head_score``), and removing it
    removes all of them; its fraction counts heads."""
    importance: Importance = field(default="abs", metadata={"group": "pruning"})
    """Importance function: how a neuron's importance to each corpus is measured."""
    steps: int = field(default=5, metadata={"group": "pruning"})
    """Number of pruning steps."""
    frac: float | dict[str, float] = field(default=0.02, metadata={"group": "pruning"})
    """Fraction of each site kind's units (neurons, or heads) removed per step (the paper: 0.02 for 50 steps).

    One number for every kind, or one per kind (``{"mlp": 0.02, "heads": 0.05}``; on the command line
    ``--frac mlp=0.02,heads=0.05``), as the taker library's ``ff_frac`` and ``attn_frac``."""
    tokens: int = field(default=8192, metadata={"group": "data"})
    """Tokens per dataset for statistics, and again (disjoint) for evaluation."""
    window: int = field(default=128, metadata={"group": "data"})
    """Tokens per window."""
    eps: dict[str, float] = field(default_factory=dict, metadata={"group": "pruning"})
    """Per site kind, added to the retain importance; missing kinds take 1e-3 (mlp) / 1e-4 (attention)."""
    head_score: HeadScore = field(default="median", metadata={"group": "pruning", "legacy": "median"})
    """How a head's score is read from its neurons' scores: their median, or their mean.

    The taker library's two head modes: its default ``attn_prune_heads_mode="mean"`` runs
    ``choose_attn_heads_by_mean``, which takes the median over the head's neurons (``torch.quantile`` at
    0.5), and its mode ``"median"`` takes the mean."""
    one_shot: bool = field(default=False, metadata={"group": "pruning"})
    """Score once on the unpruned model and remove in steps from that ranking, without re-collecting."""
    fill: Fill = field(default="zero", metadata={"group": "pruning", "legacy": "zero"})
    """What a removed neuron's activation becomes: zero, or mean (its mean over the retain statistics split).

    ``mean`` is the taker library's offset ablation: the mean is taken on the unpruned model, and a
    removed neuron keeps adding it to every input (:meth:`~circuitcut.masks.Mask.with_means`)."""
    baseline: bool = field(default=True, metadata={"group": "run"})
    """Also run random pruning with the same fractions, tokens and seed."""
    skip_common: int = field(default=50, metadata={"group": "run"})
    """The skip-common metrics ignore this many most frequent target tokens."""
    seed: int = field(default=0, metadata={"group": "run"})
    """Seeds the windows and the random baseline."""
    batch_size: int = field(default=8, metadata={"group": "run"})
    """Windows per forward pass."""
    stats_on_eval: bool = field(default=False, metadata={"group": "run"})
    """Collect statistics in the evaluation passes: half the passes, but splits no longer disjoint.

    Each step's statistics are collected during the forward passes that evaluate the previous step, on
    the evaluation split: statistics and evaluation then share tokens (the paper keeps them disjoint,
    the default)."""

    def __post_init__(self) -> None:
        self.sites = check_units(self.sites)
        if self.importance not in IMPORTANCES:
            raise ValueError(f"Unknown importance '{self.importance}': choose from {', '.join(IMPORTANCES)}.")
        if self.fill not in FILLS:
            raise ValueError(f"Unknown fill '{self.fill}': choose from {', '.join(FILLS)}.")
        if self.head_score not in HEAD_SCORES:
            raise ValueError(f"Unknown head_score '{self.head_score}': choose from {', '.join(HEAD_SCORES)}.")
        if self.steps < 1:
            raise ValueError(f"steps={self.steps}: at least one pruning step is needed.")
        if isinstance(self.frac, dict):
            unknown, missing = set(self.frac) - set(self.sites), [k for k in self.sites if k not in self.frac]
            if unknown:
                raise ValueError(f"frac given for {sorted(unknown)}, which are not among the pruned sites "
                                 f"{self.sites}: add them to sites or leave them out of frac.")
            if missing:
                raise ValueError(f"frac gives no fraction for {missing}: add {missing[0]}=FLOAT to frac, "
                                 f"or give one number for every kind.")
        for kind, frac in self.fracs.items():
            if not 0 < frac <= 1:
                raise ValueError(f"frac={frac} ({kind}) is outside (0, 1]: it is the fraction of units removed "
                                 f"per step.")
            if self.steps * frac > 1 + 1e-9:
                raise ValueError(
                    f"{self.steps} steps of {frac:.3g} would remove more than all {kind} units; "
                    f"use at most {int(1 / frac)} steps or a smaller frac."
                )
        if self.forget == self.retain:
            raise ValueError(f"forget and retain are both '{self.forget}': pruning needs two different corpora.")
        if self.tokens < self.window:
            raise ValueError(f"tokens={self.tokens} is less than one window of {self.window}.")
        unknown = set(self.eps) - set(self.sites)
        if unknown:
            raise ValueError(f"eps given for {sorted(unknown)}, which are not among the pruned sites {self.sites}.")

    @property
    def fracs(self) -> dict[UnitKind, float]:
        """The fraction of each pruned kind's units removed per step."""
        return {k: self.frac[k] if isinstance(self.frac, dict) else self.frac for k in self.sites}

    def frac_text(self) -> str:
        """``2%``, or ``mlp 2%, heads 5%`` for fractions per kind."""
        if not isinstance(self.frac, dict):
            return f"{self.frac:.0%}"
        return ", ".join(f"{kind} {frac:.0%}" for kind, frac in self.fracs.items())

    @property
    def site_kinds(self) -> tuple[SiteKind, ...]:
        """The neuron site kinds the pruned units are made of: where statistics are collected and masks made."""
        return tuple(dict.fromkeys(unit_site(k) for k in self.sites))

    def eps_for(self, kind: UnitKind) -> float:
        return self.eps.get(kind, DEFAULT_EPS[kind])

    def per_step(self, shape: ModelShape) -> dict[UnitKind, int]:
        """Units removed per step for each kind; refuses steps that would remove none."""
        counts = {k: round(frac * shape.n_units(k) * shape.n_layers) for k, frac in self.fracs.items()}
        for kind, n in counts.items():
            if n == 0:
                raise ValueError(
                    f"frac={self.fracs[kind]} removes none of this model's {shape.n_units(kind) * shape.n_layers} "
                    f"{kind} units per step: use a larger frac."
                )
        return counts

    def to_dict(self) -> dict:
        return {**asdict(self), "sites": list(self.sites)}

    @classmethod
    def from_dict(cls, data: dict) -> PruningConfig:
        """A config from ``to_dict`` or a run folder's ``config.json`` (its run settings dropped)."""
        return config_from_dict(cls, data, recorded=RUN_SETTINGS)

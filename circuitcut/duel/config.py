"""The settings of a duel: one dataclass whose fields are also ``circuitcut duel``'s flags.

Each field names, in its metadata, the group ``circuitcut duel --help`` lists its flag under
(:data:`FLAG_GROUPS`); :mod:`circuitcut.config_args` makes the flags. Reading this module imports no torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from circuitcut.config_args import option
from circuitcut.runs import config_from_dict
from circuitcut.sites import IMPORTANCES, Importance
from circuitcut.subnetwork.config import SubnetworkConfig as _Learned  # no torch: the flags are built before it

if TYPE_CHECKING:
    from circuitcut.subnetwork.config import SubnetworkConfig

FLAG_GROUPS: dict[str, str] = {
    "tasks": "the knowledge task (a WordNet target) and the corpus task (forget and retain corpora)",
    "methods": "the sizes and budgets of each method",
    "run": "the run folder, the model, seeds and evaluation",
}
"""The groups ``circuitcut duel --help`` lists its flags in, in this order."""


_in = option


@dataclass
class DuelConfig:
    """Every method on every task: what decides a duel (saved as its folder's config.json)."""

    target: str = _in("tasks", "isa:animal", "TARGET")
    """Knowledge task's target facts: a WordNet IsA target such as ``isa:animal``."""
    forget: str = _in("tasks", "python", "CORPUS")
    """Corpus task's forget corpus (as ``circuitcut prune --forget``)."""
    retain: str = _in("tasks", "prose", "CORPUS")
    """Corpus task's retain corpus; also the text the learned masks keep (ControlLM) on both tasks."""
    corpus_tokens: int = _in("tasks", 4096)
    """Corpus task's tokens per split (statistics, evaluation) of each corpus."""
    corpus_window: int = _in("tasks", 64)
    """Corpus task's tokens per window; a window's next token at one position is one training row."""
    layers: tuple[int, ...] | None = _in("methods", None, "L1,L2|A-B|none")
    """Layers whose feed-forward neurons every method may remove (none: the top half, as learned masks)."""
    sizes: tuple[int, ...] = _in("methods", (20, 80, 320), "N1,N2")
    """Neuron counts selective pruning (and random masks) remove; the learned mask's count is added per task."""
    importance: Importance = _in("methods", "abs")
    """Selective pruning's importance function."""
    steps: int = _in("methods", _Learned.steps)
    """Training steps of each learned mask."""
    weight_masks: bool = _in("methods", False)
    """Also learn a weight-level mask on each task (an extra row; its units are weights)."""
    greedy_steps: int = _in("methods", 4)
    """Greedy selection steps on each task."""
    greedy_per_step: int = _in("methods", 5)
    """Neurons greedy selection adds per step."""
    greedy_candidates: int = _in("methods", 15)
    """Neurons greedy selection shortlists per step and removes for real (0: first order only)."""
    control_weight: float = _in("methods", 30.0)
    """Weight of the kept cost's rise in greedy selection's score."""
    n_candidates: int = _in("tasks", _Learned.n_candidates)
    """Knowledge task: candidate target-family facts scored for whether the model knows them."""
    control_candidates: int = _in("tasks", _Learned.control_candidates)
    """Knowledge task: candidate control facts scored."""
    n_target: int = _in("tasks", _Learned.n_target)
    """Knowledge task: target facts (known to the model) to forget; a target with fewer than min(5, this) is refused."""
    n_control: int = _in("tasks", _Learned.n_control)
    """Knowledge task: control facts the learned masks keep, and as many again never seen (the reported controls)."""
    eval_lm_tokens: int = _in("tasks", _Learned.eval_lm_tokens)
    """Knowledge task: ControlLM tokens every mask is evaluated on."""
    random_seeds: int = _in("run", _Learned.random_seeds)
    """Random masks of each mask's size per site that every point is evaluated against."""
    seed: int = _in("run", 0)
    """Seeds the facts, windows, learned masks and random masks."""

    def __post_init__(self) -> None:
        if self.layers is not None:
            self.layers = tuple(int(layer) for layer in self.layers)
            if not self.layers:
                raise ValueError("layers is empty: give at least one layer, or none for the top half.")
        self.sizes = tuple(sorted({int(s) for s in self.sizes}))
        if not self.sizes or self.sizes[0] < 1:
            raise ValueError(f"sizes {list(self.sizes)}: give at least one neuron count, each at least 1 "
                             "(e.g. sizes=(20, 80)).")
        if self.importance not in IMPORTANCES:
            raise ValueError(f"Unknown importance '{self.importance}': choose from {', '.join(IMPORTANCES)}.")
        for name in ("corpus_tokens", "corpus_window", "steps", "greedy_steps", "greedy_per_step", "n_candidates",
                     "control_candidates", "random_seeds", "n_target", "n_control", "eval_lm_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: it must be at least 1.")
        for name in ("greedy_candidates", "control_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}: it must be at least 0.")
        if 0 < self.greedy_candidates < self.greedy_per_step:
            raise ValueError(f"greedy_candidates={self.greedy_candidates} shortlists fewer neurons than the "
                             f"greedy_per_step={self.greedy_per_step} it keeps: raise it, or 0 for first order only.")
        if self.corpus_tokens < 4 * self.corpus_window:
            raise ValueError(f"corpus_tokens={self.corpus_tokens} holds fewer than 4 windows of {self.corpus_window} "
                             "(the corpus task splits its windows into training, validation and text): raise "
                             "corpus_tokens or lower corpus_window.")
        if self.corpus_window < 8:
            raise ValueError(f"corpus_window={self.corpus_window}: a row needs some context; use at least 8.")
        if self.forget == self.retain:
            raise ValueError(f"forget and retain are both '{self.forget}': the corpus task needs two corpora.")

    def subnetwork(self, granularity: str = "neuron") -> SubnetworkConfig:
        """The learned masks' config (preset ``default`` for neurons, ``weights`` for weights) with this duel's
        target, layers, steps, seeds and budgets; greedy selection reads its sites and data too."""
        from circuitcut.subnetwork.config import preset

        return preset("weights" if granularity == "weight" else "default", target=self.target, layers=self.layers,
                      steps=self.steps, seed=self.seed, random_seeds=self.random_seeds, lm_corpus=self.retain,
                      n_candidates=self.n_candidates, control_candidates=self.control_candidates,
                      n_target=self.n_target, min_target=min(5, self.n_target), n_control=self.n_control,
                      n_control_new=self.n_control, eval_lm_tokens=self.eval_lm_tokens)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DuelConfig:
        """A config from ``to_dict`` or a duel folder's ``config.json`` (the model's name it records dropped)."""
        return config_from_dict(cls, data, recorded=("model",))

"""What decides a subnetwork run: :class:`SubnetworkConfig`, its named presets, and the config a run folder holds.

Every field is also a ``circuitcut subnet`` flag (``--init-p 0.03``), so a run on the command line
and one in a notebook are the same run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from circuitcut.config_args import option
from circuitcut.runs import config_from_dict, differing_settings, read_json
from circuitcut.sites import GRANULARITIES, MATRICES, Granularity, ModelShape, check_kinds

if TYPE_CHECKING:  # the command line builds its flags from this module before torch is imported
    from transformer_lens.model_bridge import TransformerBridge

Suppression = Literal["uniform", "unlikely", "margin"]
SUPPRESSIONS: tuple[Suppression, ...] = ("uniform", "unlikely", "margin")
SparsityMode = Literal["per_unit", "mean"]
SPARSITY_MODES: tuple[SparsityMode, ...] = ("per_unit", "mean")
LRSchedule = Literal["cosine", "constant"]
LR_SCHEDULES: tuple[LRSchedule, ...] = ("cosine", "constant")
NamedTails = Literal["keep", "drop"]
NAMED_TAILS: tuple[NamedTails, ...] = ("keep", "drop")
TargetTemplates = Literal["chosen", "train"]
TARGET_TEMPLATES: tuple[TargetTemplates, ...] = ("chosen", "train")


FLAG_GROUPS: dict[str, str] = {
    "data": "the facts and text windows a run trains, validates and reports on",
    "mask": "what is masked",
    "schedule": "how the mask scores are optimised",
    "losses": "the terms of the objective and their weights",
    "selection": "the rule that picks the final mask among the validated ones",
    "run": "the run folder, the model, seeds and bookkeeping",
}
"""The groups ``circuitcut subnet --help`` lists its flags in, in this order; each field names its own."""


_in = option


@dataclass
class SubnetworkConfig:
    """Everything that decides a subnetwork run (saved as config.json beside the result).

    Each field's docstring starts with a short summary, its flag's help; the paragraph after it is
    for developers.
    """

    target: str = _in("data", "isa:animal", "TARGET")
    """Facts to erase: REL:SYNSET (``isa:animal``, ``partof:vehicle``), ``any:SYNSET``, ``relation:REL`` or
    ``tail:WORD``.

    TargetKG, the known facts the remaining model must lose: ``<relation>:<synset>`` (facts whose tail
    lies under the synset; a lemma means its first sense, or give a name such as ``food.n.01`` or an
    8-digit offset), ``any:<synset>`` (any relation), ``relation:<Relation>`` (``relation:PartOf``) or
    ``tail:<word>``; checked before the model loads."""
    granularity: Granularity = _in("mask", "neuron")
    """Mask the activations of ``neuron_kinds`` sites, or every weight of ``matrices``."""
    layers: tuple[int, ...] | None = _in("mask", None, "L1,L2|A-B|none")
    """Layers to mask; ``None``: the top half of the model."""
    matrices: tuple[str, ...] = _in("mask", MATRICES, "M1,M2")
    """Weight matrices masked at weight granularity (attention q/k/v/o, MLP gate/in/out)."""
    neuron_kinds: tuple[str, ...] = _in("mask", ("mlp",), "K1,K2")
    """Neuron sites masked at neuron granularity: mlp, attn_v, attn_z (``circuitcut info`` lists them)."""

    steps: int = _in("schedule", 60)
    """Optimisation steps.

    Chosen on the validation curves of isa:animal and isa:food.n.01 (a validation every 5 steps, weights
    and neurons, never the reported numbers): compressed from 150 to 60 steps (``lr_steps``), the
    curves keep their shape in fractions of the run. Weight masks meet the rule from half-way (as at 150
    steps: from step 75) and settle (at most 5 % of the units changing between validations) by the last
    tenth; neuron masks meet it at one validation (animal, step 50; at 150 steps, step 75) or not at
    all (food, as at 150). At 40 steps (tried next, same curves) weight masks still meet the rule from
    step 25 (animal) and 30 (food) and settle by the last validation (3 % and 2 % of their units changing),
    so the ``weights`` preset takes 40; the animal neuron mask no longer meets it at any validation, so
    neuron runs keep 60. At 60 the weight masks hold about twice the 150-step masks' units, at 40 1.0-1.3x
    the 60-step ones (docs/results.md)."""
    lr: float = _in("schedule", 0.1)
    """Peak Adam learning rate on the scores of a run of ``lr_steps`` steps."""
    lr_steps: int | None = _in("schedule", 150, "N|none", legacy=None)
    """The run length ``lr`` is for: a run takes ``lr * lr_steps / steps``; ``None``: ``lr`` as given.

    Adam moves a score with a steady push by about the learning rate each step, so how far a score
    travels over a run is the sum of the learning rates: a unit starting at logit(0.03) = -3.5
    needs 3.5 to join the subnetwork. Scaled so, a shorter run travels as far as the 150-step run
    the defaults were chosen on: with every other schedule a fraction of ``steps``, it is that run
    compressed. Unscaled, a 60-step run at 0.1 travels about 3 and no unit joins."""
    lr_schedule: LRSchedule = _in("schedule", "cosine")
    """Learning rate after warm-up: cosine decay to 0 at the last step, or constant.

    Cosine lets the mask settle before it is chosen."""
    warmup: float = _in("schedule", 0.05)
    """Fraction of steps with a linear learning-rate warm-up."""
    init_p: float = _in("schedule", 0.03)
    """Initial probability of each unit being in the subnetwork.

    Scores start at logit(init_p): far below the 0.5 threshold, so the remaining model starts as the
    original model."""
    temperature: float = _in("schedule", 1.0)
    """Temperature of the Gumbel-sigmoid training sample.

    How sharp the soft sample whose gradient the scores get is."""
    noise_start: float = _in("schedule", 1.0)
    """Scale of the logistic noise in each training sample at the start.

    1: a unit is sampled into the subnetwork with probability sigmoid(score); it falls linearly to
    ``noise_end`` over the first ``noise_decay`` of the steps."""
    noise_end: float = _in("schedule", 0.0)
    """Noise scale after ``noise_decay`` of the steps.

    At 0 the training mask is the evaluation mask (scores > 0), so what is trained is what is evaluated."""
    noise_decay: float = _in("schedule", 0.5)
    """Fraction of steps over which the noise falls from ``noise_start`` to ``noise_end``."""

    suppression: Suppression = _in("losses", "margin")
    """TargetKG term: margin (a hinge, see ``suppress_rank``), unlikely (unlikelihood) or uniform (KL).

    ``margin``, a hinge pushing the tail's logit a nat below the ``suppress_rank``-th other token (its
    pull does not fade while the tail stays in the top ranks); ``unlikely``, -log(1 - p(first tail
    token)), whose pull fades with p(tail), so tails with a few percent of the mass keep their rank;
    ``uniform``, KL(uniform || p), flattens the whole distribution (the paper's)."""
    suppress_rank: int | None = _in("losses", 50)
    """Push a fact only while its first tail token ranks at most this; ``None``: always.

    A hinge: a suppressed fact recruits no more units; ``None`` is the paper's. Well past the top 10 the
    rule checks: at 20 the sparsity pull dropped a fact's units as soon as it left the top 20, it came
    back, and the mask cycled (isa:animal's validation target top-10 never reached 10 % within the
    control bounds; at 50 it did)."""
    suppression_weight: float = _in("losses", 1.0)
    """Weight of the TargetKG term."""
    control_kg_weight: float = _in("losses", 20.0)
    """Weight of KL(original || remaining) on ControlKG tails.

    Against the margin's pull of one per unsuppressed fact, weight 1 or 5 let validation controls move
    +18 to +43 %."""
    control_lm_weight: float = _in("losses", 20.0)
    """Weight of KL(original || remaining) on ControlLM windows.

    The KL is taken over the original model's top-k tokens at each position (see objective.py)."""
    sparsity: SparsityMode = _in("losses", "per_unit")
    """Sparsity penalty: the sum of unit probabilities, or their mean.

    ``per_unit``: the penalty is ``weight * sum(sigmoid(scores))``, so each unit feels the same pull
    whatever the number of units; ``mean``: ``weight * mean(sigmoid(scores))`` (the paper's), a pull
    of weight / n_units per unit."""
    sparsity_start: float = _in("losses", 0.004)
    """Sparsity weight over the first half of training.

    About the 90th percentile of the margin's push per neuron at the original model."""
    sparsity_end: float = _in("losses", 0.008)
    """Sparsity weight at the last step, reached linearly from ``sparsity_start``."""

    isa_depth: int = _in("data", 3)
    """IsA links up to this many hypernym steps (3 gives (dog, IsA, animal))."""
    named_tails: NamedTails = _in("data", "keep")
    """Keep or drop facts whose head names their tail (A green frog is a kind of frog).

    Target and control alike (``canned food`` / ``foodstuff``:
    :attr:`~circuitcut.data.kg.Triplet.tail_named_in_head`): ``drop`` removes them before sampling
    (LAMA-UHN's filter: a copy of the prompt answers them, so they test copying as much as knowledge)."""
    target_templates: TargetTemplates = _in("data", "chosen")
    """Target sentences trained on: each fact's chosen template, or every training template.

    ``chosen``: the rule validates on the fact's other training template; ``train``: the rule validates
    on the relation's validation paraphrases, which only IsA has. Either way the reported paraphrases
    are held-out templates no run trains or chooses on."""
    n_candidates: int = _in("data", 400)
    """Facts of the target family scored for "known" (seeded sample)."""
    control_candidates: int = _in("data", 1500)
    """Facts from elsewhere scored for ControlKG.

    About one in five is known to SmolLM2."""
    n_target: int | None = _in("data", 20)
    """At most this many known target facts (seeded sample); ``None``: all."""
    min_target: int = _in("data", 5)
    """Refuse a target with fewer known facts."""
    n_control: int = _in("data", 100)
    """ControlKG facts the maintenance loss trains on."""
    n_control_val: int = _in("data", 40)
    """Further known control facts for the validation rule only."""
    n_control_new: int = _in("data", 100)
    """Further known control facts never seen in training or validation.

    The honest maintenance figure."""
    control_batch: int = _in("data", 32)
    """ControlKG facts per step."""
    lm_corpus: str = _in("data", "prose", "CORPUS")
    """ControlLM corpus: prose, python, code, a path or hf:NAME.

    Read by circuitcut.data.corpora."""
    window: int = _in("data", 128)
    """ControlLM window length in tokens."""
    lm_pool_tokens: int = _in("data", 8192)
    """Training ControlLM pool in tokens.

    Its original top-k log-probs are cached."""
    lm_batch: int = _in("data", 4)
    """ControlLM windows per step."""
    lm_top_k: int = _in("data", 64)
    """Original log-probs kept per ControlLM position."""
    val_lm_tokens: int = _in("data", 2048)
    """ControlLM tokens for the validation rule (training split, after the training pool)."""
    eval_lm_tokens: int = _in("data", 8192)
    """ControlLM tokens (evaluation split) for the reported perplexity."""
    known_top_k: int = _in("data", 10)
    """A fact is known when its first tail token is in the original model's top k."""

    validate_every: int = _in("selection", 5)
    """Steps between validations of the evaluation mask; the final mask is one of these."""
    max_target_top10: float = _in("selection", 10.0)
    """At most this percent of validation target rows may keep the tail in the top 10.

    The rows are training facts on the templates ``target_templates`` names, counting the rows the
    original model ranks in its top 10."""
    max_control_dppl: float = _in("selection", 10.0)
    """At most this validation ControlKG whole-tail dPPL, in percent."""
    max_lm_dppl: float = _in("selection", 5.0)
    """At most this validation ControlLM dPPL, in percent.

    The sparsest validated mask that keeps all three bounds wins; if none does, the one that breaks them
    least (see selection.py)."""

    early_stop: int | None = _in("selection", 2, "N|none", legacy=None)
    """Stop once the rule has held at this many validations in a row and the mask settled; none: never.

    Settled: at each of those validations after the first, at most ``early_stop_change`` of the
    mask's units entered or left it since the validation before. The schedules are fractions of
    ``steps``, so a run that stops early has taken the first part of the same run."""
    early_stop_change: float = _in("selection", 0.1, "FRACTION", legacy=0.1)
    """Fraction of the mask's units that may change between validations and still count as settled."""

    random_seeds: int = _in("run", 3)
    """Random masks of the same size per site for the baseline."""
    seed: int = _in("run", 0)
    """Seeds the Gumbel noise and the batches (and, unless ``data_seed`` is set, the data)."""
    data_seed: int | None = _in("run", None)
    """Seeds which facts are sampled and the ControlLM windows; ``None``: ``seed``.

    Fix it to learn masks for the same facts under other seeds (how much of a subnetwork is seed noise)."""
    checkpoint_every: int = _in("run", 50)
    """Steps between atomic checkpoints (resumable) when the run has a folder."""
    log_every: int = _in("run", 10)
    """Steps between history records."""
    prefix_cache_mb: float = _in("run", 1024.0, "MB")
    """Memory for the residuals entering the first masked layer, computed once; 0: no cache.

    Below the first masked layer every forward is the original model on the same sequences, so
    :class:`~circuitcut.subnetwork.prefix.FrozenPrefix` runs those blocks once; the logits are the
    same. Left off when the run's sequences would need more, or when layer 0 is masked. A run saved
    before the cache existed reads as using it: the cache changes time, not results."""

    def __post_init__(self) -> None:
        _choice("granularity", self.granularity, GRANULARITIES)
        _choice("suppression", self.suppression, SUPPRESSIONS)
        _choice("sparsity", self.sparsity, SPARSITY_MODES)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _choice("named_tails", self.named_tails, NAMED_TAILS)
        _choice("target_templates", self.target_templates, TARGET_TEMPLATES)
        if self.layers is not None:
            self.layers = tuple(int(layer) for layer in self.layers)
            if not self.layers:
                raise ValueError("layers is empty: give at least one layer, or None for the top half.")
        self.matrices = tuple(self.matrices)
        unknown = [m for m in self.matrices if m not in MATRICES]
        if unknown or not self.matrices:
            raise ValueError(f"matrices must be a non-empty subset of {', '.join(MATRICES)}, got {list(self.matrices)}.")
        self.neuron_kinds = check_kinds(self.neuron_kinds)
        positive = ("steps", "lr", "temperature", "n_control", "n_control_val", "n_control_new", "control_batch",
                    "window", "lm_pool_tokens", "lm_batch", "lm_top_k", "val_lm_tokens", "eval_lm_tokens",
                    "known_top_k", "validate_every", "checkpoint_every", "log_every", "isa_depth", "n_candidates",
                    "control_candidates", "min_target")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        nonnegative = ("suppression_weight", "control_kg_weight", "control_lm_weight", "sparsity_start",
                       "sparsity_end", "random_seeds", "noise_start", "noise_end", "max_target_top10",
                       "max_control_dppl", "max_lm_dppl")
        for name in nonnegative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.lr_steps is not None and self.lr_steps < 1:
            raise ValueError(f"lr_steps must be >= 1 (or None: lr as given), got {self.lr_steps}.")
        if self.early_stop is not None and self.early_stop < 1:
            raise ValueError(f"early_stop must be >= 1 validation (or None: run every step), got {self.early_stop}.")
        if self.prefix_cache_mb < 0:
            raise ValueError(f"prefix_cache_mb must be >= 0 (0: no prefix cache), got {self.prefix_cache_mb}.")
        if self.suppress_rank is not None and self.suppress_rank < 1:
            raise ValueError(f"suppress_rank must be >= 1 (or None: always push), got {self.suppress_rank}.")
        if self.n_target is not None and self.n_target < self.min_target:
            raise ValueError(f"n_target ({self.n_target}) is below min_target ({self.min_target}).")
        for name in ("warmup", "noise_decay", "early_stop_change"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} is a fraction in [0, 1], got {getattr(self, name)}.")
        if not 0 < self.init_p < 1:
            raise ValueError(f"init_p is a probability in (0, 1), got {self.init_p}.")
        if self.lm_pool_tokens < self.window * self.lm_batch:
            raise ValueError(f"lm_pool_tokens ({self.lm_pool_tokens}) holds fewer than lm_batch ({self.lm_batch}) windows of {self.window}.")

    @property
    def peak_lr(self) -> float:
        """The peak learning rate this run takes (``lr`` scaled to ``steps``, see ``lr_steps``)."""
        return self.lr if self.lr_steps is None else self.lr * self.lr_steps / self.steps

    @property
    def sample_seed(self) -> int:
        """The seed that picks the facts and ControlLM windows."""
        return self.seed if self.data_seed is None else self.data_seed

    @property
    def units(self) -> str:
        """What is masked, in words: ``mlp neurons``, ``weights of all matrices``."""
        if self.granularity == "neuron":
            return f"{'+'.join(self.neuron_kinds)} neurons"
        return f"weights of {'all matrices' if set(self.matrices) == set(MATRICES) else '+'.join(self.matrices)}"

    def kg_key(self) -> dict:
        """The settings that decide the KG facts (scoring them is the slow part of building data)."""
        names = ("target", "isa_depth", "n_candidates", "control_candidates", "n_target", "min_target", "n_control",
                 "n_control_val", "n_control_new", "known_top_k")
        # Absent means the default, as in the folders made before these options existed (their facts stay
        # reusable); the target's templates decide its encoded batches, not which facts are sampled.
        later = {n: getattr(self, n) for n, default in (("named_tails", "keep"), ("target_templates", "chosen"))
                 if getattr(self, n) != default}
        return {**{n: getattr(self, n) for n in names}, **later, "sample_seed": self.sample_seed}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SubnetworkConfig:
        return config_from_dict(cls, data)

    def resolved_layers(self, shape: ModelShape) -> tuple[int, ...]:
        layers = self.layers if self.layers is not None else tuple(range(shape.n_layers // 2, shape.n_layers))
        bad = [layer for layer in layers if not 0 <= layer < shape.n_layers]
        if bad:
            raise ValueError(f"Layers {bad} do not exist: {shape.name} has layers 0-{shape.n_layers - 1}.")
        return layers

    def sites(self, model: TransformerBridge) -> dict[str, tuple[int, ...]]:
        """Name and shape of every mask site this config masks on this model."""
        from circuitcut.subnetwork.neuron_masks import neuron_sites
        from circuitcut.weight_masks import weight_sites

        shape = ModelShape.of(model)
        layers = list(self.resolved_layers(shape))
        if self.granularity == "weight":
            return weight_sites(model, layers, self.matrices)
        return neuron_sites(shape, layers, self.neuron_kinds)


PRESETS: dict[str, dict] = {
    "default": {},
    "paper": dict(neuron_kinds=("mlp", "attn_v"), steps=500, lr=0.2, lr_steps=None, lr_schedule="constant", warmup=0.1, init_p=0.45,
                  noise_end=1.0, suppression="uniform", suppress_rank=None, suppression_weight=1.5, sparsity="mean",
                  sparsity_start=2.0, sparsity_end=3.0, control_kg_weight=1.0, control_lm_weight=1.0),
    "unlikely": dict(steps=200, lr_steps=None, suppression="unlikely", suppress_rank=20, sparsity_start=0.002, sparsity_end=0.004,
                     control_kg_weight=1.0, control_lm_weight=1.0),
    "weights": dict(granularity="weight", steps=40, sparsity_start=3e-4, sparsity_end=6e-4),
}
"""Named settings on top of the defaults. ``paper``: the values of the paper's released code, as circuitcut
used them before its own defaults (a mean sparsity term, init just below the threshold, constant lr
0.2, suppression to uniform that never stops). ``unlikely``: circuitcut's previous defaults (the tail's
unlikelihood with weak maintenance), whose masks were critical but kept a quarter of the target facts in
the top 10. ``weights``: weight masks over every matrix of the top half, with a sparsity weight near the 99th
percentile of the margin's push per weight (3.4e-4 at steps 20-30 of isa:animal; a neuron's is 0.015-0.03,
so the neuron default, 0.004, would be ten times what almost every weight feels), in 40 steps (see ``steps``)."""


def preset(name: str, **overrides) -> SubnetworkConfig:
    """A config from a named preset, with fields overridden: ``preset("paper", target="isa:food")``."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset '{name}': choose from {', '.join(PRESETS)}.")
    return SubnetworkConfig(**{**PRESETS[name], **overrides})


def saved_config(folder: str | Path) -> SubnetworkConfig | None:
    """The config a run folder was started with; ``None`` when it holds none."""
    path = Path(folder) / "config.json"
    return SubnetworkConfig.from_dict(read_json(path)) if path.exists() else None


BOOKKEEPING = ("checkpoint_every", "log_every")
"""Settings that decide only when a run saves and records, never what it learns: a run may continue under others."""


def check_same_config(saved: SubnetworkConfig | None, asked: SubnetworkConfig, where: str | Path) -> None:
    """Refuse to continue a run (``where``: its folder or checkpoint) saved with another config, naming each
    setting that differs (``data_seed`` unset and ``data_seed = seed`` sample the same facts: one setting;
    :data:`BOOKKEEPING` settings may differ)."""
    if saved is None:
        return
    was, now = ({**c.to_dict(), "data_seed": c.sample_seed} for c in (saved, asked))
    for name in BOOKKEEPING:
        was.pop(name), now.pop(name)
    if was != now:
        differ = "; ".join(differing_settings(was, now))
        raise ValueError(f"{where} holds a run with another config ({differ}); use another output folder "
                         "or the same settings.")


def _choice(name: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got '{value}'.")

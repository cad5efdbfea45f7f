"""Learning a knowledge-critical subnetwork: the config, the training loop with checkpoints, the result.

Only mask scores are trained; the model's weights are frozen and never change. One step samples
one straight-through mask, runs the remaining model on the TargetKG facts, a batch of ControlKG
facts and a batch of ControlLM windows (one backward pass each, so only one forward's activations
are alive at a time), and adds the sparsity term.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from circuitcut import distributed
from circuitcut.runs import atomic_path, read_json, write_json
from circuitcut.sites import ModelShape, check_kinds
from circuitcut.subnetwork.data import KG_FIELDS, SubnetworkData, build_data, build_kg
from circuitcut.subnetwork.evaluation import evaluate_subnetwork
from circuitcut.subnetwork.mask import GRANULARITIES, Granularity, SubnetworkMask, remover
from circuitcut.subnetwork.neuron_masks import neuron_sites
from circuitcut.subnetwork.objective import (
    kg_logits,
    kl_from_uniform,
    kl_to_reference,
    learning_rate,
    reference,
    sparsity_weight,
    topk_kl,
)
from circuitcut.subnetwork.parametrize import MaskScores
from circuitcut.subnetwork.weight_masks import MATRICES, weight_sites

CHECKPOINT = "checkpoint.pt"
KG_DATA = "kg.pt"


@dataclass
class SubnetworkConfig:
    """Everything that decides a subnetwork run (saved as config.json beside the result)."""

    target: str = "isa:animal"
    """TargetKG: a relation and tail (``isa:animal``) whose known facts the remaining model must lose."""
    granularity: Granularity = "neuron"
    """``neuron`` (activations at ``neuron_kinds`` sites) or ``weight`` (every weight of ``matrices``)."""
    layers: tuple[int, ...] | None = None
    """Layers to mask; ``None``: the top half of the model."""
    matrices: tuple[str, ...] = MATRICES
    """Weight matrices masked at weight granularity (attention q/k/v/o, MLP gate/in/out)."""
    neuron_kinds: tuple[str, ...] = ("mlp", "attn_v")
    """Neuron sites masked at neuron granularity (``mlp.hook_post``, ``attn.hook_v``)."""
    steps: int = 500
    """Optimisation steps."""
    lr: float = 0.2
    """Adam learning rate on the scores."""
    warmup: float = 0.1
    """Fraction of steps with a linear learning-rate warm-up."""
    init_p: float = 0.45
    """Initial probability of each unit being in the subnetwork (scores start at logit(init_p))."""
    temperature: float = 1.0
    """Gumbel-sigmoid temperature during training."""
    suppression_weight: float = 1.5
    """Weight of KL(uniform || remaining) on TargetKG tails."""
    control_kg_weight: float = 1.0
    """Weight of KL(original || remaining) on ControlKG tails."""
    control_lm_weight: float = 1.0
    """Weight of KL(original || remaining) on ControlLM windows (top-k, see objective.py)."""
    sparsity_start: float = 2.0
    """Sparsity weight over the first half of training..."""
    sparsity_end: float = 3.0
    """...rising linearly to this at the last step."""
    isa_depth: int = 3
    """IsA links up to this many hypernym steps (3 gives ``(dog, IsA, animal)``)."""
    n_candidates: int = 400
    """Facts of the target family scored for "known" (seeded sample)."""
    control_candidates: int = 1000
    """Facts from elsewhere scored for ControlKG; about one in five is known to SmolLM2."""
    n_target: int | None = 20
    """At most this many known target facts (seeded sample); ``None``: all."""
    min_target: int = 5
    """Refuse a target with fewer known facts."""
    n_control: int = 200
    """ControlKG facts (known facts outside the target, other tails)."""
    control_batch: int = 32
    """ControlKG facts per step."""
    lm_corpus: str = "prose"
    """ControlLM corpus (circuitcut.data.corpora)."""
    window: int = 128
    """ControlLM window length in tokens."""
    lm_pool_tokens: int = 8192
    """Training ControlLM pool (its original top-k log-probs are cached)."""
    lm_batch: int = 4
    """ControlLM windows per step."""
    lm_top_k: int = 64
    """Original log-probs kept per ControlLM position."""
    eval_lm_tokens: int = 8192
    """ControlLM tokens (evaluation split) for perplexity."""
    known_top_k: int = 10
    """A fact is *known* when its first tail token is in the original model's top k."""
    random_seeds: int = 3
    """Random masks of the same size per site for the baseline."""
    seed: int = 0
    """Seeds the Gumbel noise and the batches (and, unless ``data_seed`` is set, the data)."""
    data_seed: int | None = None
    """Seeds which facts are sampled and the ControlLM windows; ``None``: ``seed``. Fix it to learn masks
    for the same facts under other seeds (how much of a subnetwork is seed noise)."""
    checkpoint_every: int = 50
    """Steps between atomic checkpoints (resumable) when the run has a folder."""
    log_every: int = 10
    """Steps between history records."""

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}, got '{self.granularity}'.")
        if self.layers is not None:
            self.layers = tuple(int(layer) for layer in self.layers)
            if not self.layers:
                raise ValueError("layers is empty: give at least one layer, or None for the top half.")
        self.matrices = tuple(self.matrices)
        unknown = [m for m in self.matrices if m not in MATRICES]
        if unknown or not self.matrices:
            raise ValueError(f"matrices must be a non-empty subset of {', '.join(MATRICES)}, got {list(self.matrices)}.")
        self.neuron_kinds = check_kinds(self.neuron_kinds)
        positive = ("steps", "lr", "temperature", "n_control", "control_batch", "window", "lm_pool_tokens",
                    "lm_batch", "lm_top_k", "eval_lm_tokens", "known_top_k", "checkpoint_every", "log_every",
                    "isa_depth", "n_candidates", "control_candidates", "min_target")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        nonnegative = ("suppression_weight", "control_kg_weight", "control_lm_weight", "sparsity_start",
                       "sparsity_end", "random_seeds")
        for name in nonnegative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.n_target is not None and self.n_target < self.min_target:
            raise ValueError(f"n_target ({self.n_target}) is below min_target ({self.min_target}).")
        if not 0 <= self.warmup <= 1:
            raise ValueError(f"warmup is a fraction of steps in [0, 1], got {self.warmup}.")
        if not 0 < self.init_p < 1:
            raise ValueError(f"init_p is a probability in (0, 1), got {self.init_p}.")
        if self.lm_pool_tokens < self.window * self.lm_batch:
            raise ValueError(f"lm_pool_tokens ({self.lm_pool_tokens}) holds fewer than lm_batch ({self.lm_batch}) windows of {self.window}.")

    @property
    def sample_seed(self) -> int:
        """The seed that picks the facts and ControlLM windows."""
        return self.seed if self.data_seed is None else self.data_seed

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SubnetworkConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown subnetwork config fields: {sorted(unknown)}.")
        return cls(**data)

    def resolved_layers(self, shape: ModelShape) -> tuple[int, ...]:
        layers = self.layers if self.layers is not None else tuple(range(shape.n_layers // 2, shape.n_layers))
        bad = [layer for layer in layers if not 0 <= layer < shape.n_layers]
        if bad:
            raise ValueError(f"Layers {bad} do not exist: {shape.name} has layers 0-{shape.n_layers - 1}.")
        return layers

    def sites(self, model: TransformerBridge) -> dict[str, tuple[int, ...]]:
        """Name and shape of every mask site this config masks on this model."""
        shape = ModelShape.of(model)
        layers = list(self.resolved_layers(shape))
        if self.granularity == "weight":
            return weight_sites(model, layers, self.matrices)
        return neuron_sites(shape, layers, self.neuron_kinds)


@dataclass
class SubnetworkResult:
    """A found subnetwork: its mask, config, training history and evaluation (``metrics``)."""

    config: SubnetworkConfig
    mask: SubnetworkMask
    history: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)

    def save(self, folder: str | Path) -> Path:
        """Write config.json, mask.safetensors and metrics.json (history included), each atomically."""
        folder = Path(folder)
        write_json(folder / "config.json", self.config.to_dict())
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
        return cls(
            saved_config(folder),
            SubnetworkMask.load(folder / "mask.safetensors", model),
            history,
            metrics,
        )


def saved_config(folder: str | Path) -> SubnetworkConfig | None:
    """The config a run folder was started with; ``None`` when it holds none."""
    path = Path(folder) / "config.json"
    return SubnetworkConfig.from_dict(read_json(path)) if path.exists() else None


@contextmanager
def frozen(model: TransformerBridge) -> Iterator[None]:
    """Model weights get no gradient while scores train; the flags are restored afterwards."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def train_scores(
    model: TransformerBridge,
    config: SubnetworkConfig,
    data: SubnetworkData,
    *,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    on_step: Callable[[int, dict], None] | None = None,
) -> tuple[MaskScores, list[dict]]:
    """Train mask scores; with ``checkpoint``, save there every ``checkpoint_every`` steps and resume from it.

    ``on_step(step, record)`` is called after every step (for live plots in notebooks).
    """
    data.check()
    device = next(model.parameters()).device
    scores = MaskScores(config.sites(model), config.init_p).to(device)
    optimizer = torch.optim.Adam(scores.parameters(), lr=config.lr)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    history: list[dict] = []
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        start, history = _resume(checkpoint, config, scores, optimizer, generator)

    with frozen(model):
        ref = reference(model, data.control.tokens, data.control.predict_pos, data.lm, top_k=config.lm_top_k)
        keep0 = {name: torch.ones_like(s) for name, s in scores.items()}
        bar = tqdm(range(start, config.steps), desc="subnetwork", initial=start, total=config.steps,
                   disable=not (progress and distributed.is_main_process()))
        with remover(model, config.granularity, keep0) as masker:
            for step in bar:
                record = _step(model, config, data, ref, scores, optimizer, generator, masker, step)
                if step % config.log_every == 0 or step == config.steps - 1:
                    history.append(record)
                    bar.set_postfix(loss=f"{record['loss']:.3g}", kept=f"{record['sparsity']:.1f}%")
                if (checkpoint is not None and distributed.is_main_process()
                        and ((step + 1) % config.checkpoint_every == 0 or step == config.steps - 1)):
                    _save_checkpoint(checkpoint, config, step + 1, scores, optimizer, generator, history)
                if on_step is not None:
                    on_step(step, record)
    return scores, history


def _step(model, config, data, ref, scores, optimizer, generator, masker, step: int) -> dict:
    lr = learning_rate(step, config.steps, config.lr, config.warmup)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    masks = scores.sample(temperature=config.temperature, generator=generator)
    # Each term's backward stops at these leaves and accumulates there; one final backward
    # carries the sum into the scores, so the three forward graphs never coexist in memory.
    keep = {name: (1 - m).detach().requires_grad_() for name, m in masks.items()}
    masker.set_keep(keep)
    control = torch.randperm(len(data.control.tokens), generator=generator, device=generator.device)[: config.control_batch].cpu()
    windows = torch.randperm(len(data.lm), generator=generator, device=generator.device)[: config.lm_batch].cpu()
    # Under torchrun every rank draws the same mask and batches (same seed) and takes its share of
    # each batch; the gradients are averaged before the step, so all ranks take the same step.
    target, control, windows = (distributed.shard(i) for i in (torch.arange(len(data.target.tokens)), control, windows))

    terms = {}
    if config.suppression_weight:
        logits = kg_logits(model, data.target.tokens[target], data.target.predict_pos[target])
        terms["suppression"] = kl_from_uniform(logits)
        (config.suppression_weight * terms["suppression"]).backward()
    if config.control_kg_weight:
        logits = kg_logits(model, data.control.tokens[control], data.control.predict_pos[control])
        terms["control_kg"] = kl_to_reference(ref.control_logp[control].to(logits.device), logits)
        (config.control_kg_weight * terms["control_kg"]).backward()
    if config.control_lm_weight:
        logits = model(data.lm[windows].to(generator.device)).float()
        terms["control_lm"] = topk_kl(ref.lm_index[windows].to(logits.device), ref.lm_logp[windows].to(logits.device), logits)
        (config.control_lm_weight * terms["control_lm"]).backward()
    grads = [(1 - masks[n], k.grad) for n, k in keep.items() if k.grad is not None]
    if grads:
        torch.autograd.backward([g[0] for g in grads], [g[1] for g in grads])
    weight = sparsity_weight(step, config.steps, config.sparsity_start, config.sparsity_end)
    terms["density"] = scores.density()
    (weight * terms["density"]).backward()
    distributed.all_reduce_grads(scores.parameters())
    optimizer.step()

    with torch.no_grad():
        outside = sum(int((s <= 0).sum()) for s in scores.scores)
    total = (config.suppression_weight * terms.get("suppression", 0) + config.control_kg_weight * terms.get("control_kg", 0)
             + config.control_lm_weight * terms.get("control_lm", 0) + weight * terms["density"])
    return {
        "step": step,
        "lr": lr,
        "sparsity_weight": weight,
        **{k: float(v.detach()) for k, v in terms.items()},
        "loss": float(total.detach()),
        "sparsity": 100 * outside / scores.n_units(),  # of the deterministic mask after this step
    }


def _save_checkpoint(path, config, step, scores, optimizer, generator, history) -> None:
    state = {
        "config": config.to_dict(),
        "step": step,
        "scores": scores.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "history": history,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _resume(path, config, scores, optimizer, generator) -> tuple[int, list[dict]]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state["config"] != config.to_dict():
        changed = sorted(k for k, v in config.to_dict().items() if state["config"].get(k) != v)
        raise ValueError(
            f"{path} is a checkpoint of a run with another config (differs in {changed}); "
            f"use another output folder or the same config."
        )
    scores.load_state_dict(state["scores"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    return state["step"], state["history"]


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
        >>> result = find_subnetwork(model, SubnetworkConfig(target="tail:animal", steps=300), "runs/animal")
        >>> result.metrics["change"]["target"]["dppl"], result.mask.sparsity()
        >>> with result.mask.removed(model):
        ...     model.generate("A dog is a kind of")
    """
    config = config or SubnetworkConfig()
    started = time.perf_counter()
    folder = Path(out_dir) if out_dir is not None else None
    if folder is not None and (folder / CHECKPOINT).exists() and saved_config(folder) != config:
        raise ValueError(f"{folder} holds a run with another config; use another output folder or the same config.")
    finished = folder is not None and (folder / "metrics.json").exists()  # written last by save()
    if finished and data is None and saved_config(folder) == config:
        return SubnetworkResult.load(folder, model)
    if data is None:
        data = _run_data(model, config, folder)
    data.check()
    prepared = time.perf_counter()
    if folder is not None:
        write_json(folder / "config.json", config.to_dict())
        write_json(folder / "facts.json", data.facts)
    scores, history = train_scores(
        model, config, data, checkpoint=folder / CHECKPOINT if folder is not None else None, progress=progress
    )
    trained = time.perf_counter()
    mask = SubnetworkMask(ModelShape.of(model), config.granularity, {n: m.cpu() for n, m in scores.hard().items()})
    metrics = evaluate_subnetwork(model, mask, data, random_seeds=config.random_seeds)
    metrics["target"] = config.target
    metrics["n_facts"] = {name: len(batch) for name, batch in data.eval_kg.items()}
    metrics["seconds"] = {
        "data": prepared - started,
        "train": trained - prepared,
        "evaluate": time.perf_counter() - trained,
        "per_step": (trained - prepared) / max(config.steps, 1),
    }
    result = SubnetworkResult(config, mask, history, metrics)
    if folder is not None:
        result.save(folder)
    return result


def _run_data(model: TransformerBridge, config: SubnetworkConfig, folder: Path | None) -> SubnetworkData:
    """The run's data; the KG facts are reloaded from the folder when built from the same KG fields.

    Scoring candidate facts takes minutes; training and ControlLM settings do not change them.
    """
    if folder is None:
        return build_data(model, config)
    path, key = folder / KG_DATA, {name: getattr(config, name) for name in KG_FIELDS}
    saved = torch.load(path, weights_only=False) if path.exists() else None
    if saved is not None and saved["key"] == key:
        return build_data(model, config, saved["kg"])
    parts = build_kg(model, config)
    with atomic_path(path) as tmp:
        torch.save({"key": key, "kg": parts}, tmp)
    return build_data(model, config, parts)

"""Relearning: fine-tune with a removal held in place and watch whether what it removed comes back.

For a finished run folder, three curves with the same fine-tuning (data, order, learning rate):
the method's removal (selective pruning at one step, or the learned subnetwork), a random removal
of the same size, and the original model as the reference. Forget and retain metrics are measured
at steps 0, 1, 2, 4, 8 ... and the last step. The figure of merit is the number of steps (and
tokens) until the forget metric regains ``recover`` (half) of what the removal cost.

Fine-tuning data is disjoint from every evaluation split (refused otherwise):

* pruning runs: windows of the forget corpus's ``stats`` split beyond those the run scored
  neurons on (evaluation uses the ``eval`` split: other documents);
* subnetworks: known facts of the target family about other subjects than any evaluation fact.

Each finished curve is written to ``relearn.json`` in the run folder before the next starts; a
command started again with the same settings resumes with the next curve.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.data.corpora import corpus_windows
from circuitcut.robustness.examples import Facts, Windows
from circuitcut.robustness.family import FamilyConfig, family_facts, generalisation
from circuitcut.robustness.probe import probe
from circuitcut.robustness.removal import HOLDS, Hold, Removal
from circuitcut.robustness.source import PruneRun, SubnetRun, open_run
from circuitcut.runs import config_from_dict, provenance, read_json, write_config

RESULT = "relearn.json"
Trainable = Literal["all", "mlp"]


@dataclass
class RelearnConfig:
    """Settings of a relearning run (saved in relearn.json; a rerun with other settings is refused)."""

    steps: int = 32
    """Fine-tuning steps per curve."""
    lr: float = 1e-4
    """AdamW learning rate (no weight decay; gradients clipped to norm 1)."""
    batch_size: int = 4
    """Windows (pruning runs) or facts (subnetworks) per step."""
    tokens: int | None = None
    """Pool of fine-tuning tokens for pruning runs; ``None``: what the steps use, so no window repeats."""
    eval_tokens: int = 2048
    """Tokens of each evaluation split (forget, retain) measured at each evaluation (pruning runs)."""
    hold: Hold = "hooks"
    """How removed units stay removed: ``hooks`` (masks on activations / weights) or ``surgery``
    (zeroed weights whose gradients are zeroed)."""
    train: Trainable = "all"
    """Weights fine-tuned: ``all`` remaining weights, or only the feed-forward (``mlp``) ones."""
    step: int | None = None
    """Pruning step whose masks are used; ``None``: the step of best selectivity."""
    recover: float = 0.5
    """Recovery counted when the forget metric regains this fraction of what the removal cost."""
    corpus: str | None = None
    """Fine-tuning corpus of pruning runs; ``None``: the run's forget corpus."""
    seed: int = 0
    """Seeds the batch order and a subnetwork's random mask."""
    facts: FamilyConfig = field(default_factory=FamilyConfig)
    """Which family facts a subnetwork is fine-tuned on (and generalisation is measured on)."""

    def __post_init__(self) -> None:
        if isinstance(self.facts, dict):
            self.facts = FamilyConfig(**self.facts)
        for name in ("steps", "batch_size", "eval_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr} (try 1e-4).")
        if self.tokens is not None and self.tokens < 1:
            raise ValueError(f"tokens must be positive (or None for one pass), got {self.tokens}.")
        if self.hold not in HOLDS:
            raise ValueError(f"hold must be one of {', '.join(HOLDS)}, got '{self.hold}'.")
        if self.train not in ("all", "mlp"):
            raise ValueError(f"train must be 'all' or 'mlp', got '{self.train}'.")
        if not 0 < self.recover <= 1:
            raise ValueError(f"recover is a fraction in (0, 1], got {self.recover} (0.5: half-recovery).")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RelearnConfig:
        return config_from_dict(cls, data)


@dataclass
class RelearnTask:
    """What the curves fine-tune on and measure, and which forget metric decides recovery."""

    train: Windows | Facts
    forget: Windows | Facts
    retain: Windows | Facts
    metric: str
    """``top1`` for token windows, ``top10`` for facts (the first tail token in the top 10)."""
    family: dict[str, Facts] = field(default_factory=dict)
    """A subnetwork's fact sets by name (target, family held-out, sibling), for :func:`generalisation`."""

    def check(self) -> None:
        """Refuse a fine-tuning set that shares examples with either evaluation set."""
        self.train.check_disjoint(self.forget, ("fine-tuning", "forget evaluation"))
        self.train.check_disjoint(self.retain, ("fine-tuning", "retain evaluation"))


def build_task(model: TransformerBridge, run: PruneRun | SubnetRun, config: RelearnConfig) -> RelearnTask:
    """The run's fine-tuning and evaluation data (see the module docstring for where each comes from)."""
    if isinstance(run, SubnetRun):
        facts = family_facts(model, run, config.facts)
        return RelearnTask(facts["family_heldout"], facts["target"], Facts(run.eval_kg["control"]), "top10", facts)
    rc = run.config
    corpus = config.corpus or rc.forget

    def evaluation(name: str) -> Windows:
        return Windows(corpus_windows(name, model.tokenizer, n_tokens=config.eval_tokens, window=rc.window,
                                      split="eval", seed=rc.seed), rc.batch_size)

    forget, retain = evaluation(rc.forget), evaluation(rc.retain)
    # The run scored neurons on the first windows of the stats split: fine-tune on the ones after. The
    # same snippet can sit in documents of both splits, so spare windows replace those that share a span
    # with an evaluation window.
    skip = rc.tokens // rc.window if corpus == rc.forget else 0
    n_train = (config.tokens or config.steps * config.batch_size * rc.window) // rc.window
    spare = max(8, n_train // 8)
    drawn = corpus_windows(corpus, model.tokenizer, n_tokens=(skip + n_train + spare) * rc.window, window=rc.window,
                           split="stats", seed=rc.seed)[skip:]
    train = Windows(drawn).disjoint_from(forget, retain)
    return RelearnTask(Windows(train.tokens[:n_train]), forget, retain, "top1")


def eval_steps(steps: int) -> list[int]:
    """0, 1, 2, 4, 8 ... and the last step: fine near the start, where recovery is fast."""
    points, s = {0, steps}, 1
    while s < steps:
        points.add(s)
        s *= 2
    return sorted(points)


def steps_to_recover(curve: list[dict], reference: float, metric: str, fraction: float = 0.5) -> dict:
    """First measured step at which the forget metric regains ``fraction`` of what the removal cost.

    ``reference`` is the original model's value; the loss is ``reference - curve[0]``. ``step`` is
    ``None`` when the budget ends first; ``after`` is the previous measured step (recovery happened
    in ``(after, step]``).
    """
    start = curve[0]["forget"][metric]
    lost = reference - start
    out = {"metric": metric, "reference": reference, "start": start, "lost": lost,
           "goal": start + fraction * lost, "step": None, "tokens": None, "after": None}
    if lost <= 0:
        return {**out, "note": "the removal cost nothing on this metric"}
    for before, point in zip(curve, curve[1:]):
        if point["forget"][metric] >= out["goal"]:
            return {**out, "step": point["step"], "tokens": point["tokens"], "after": before["step"]}
    return {**out, "note": f"not recovered within {curve[-1]['step']} steps"}


@dataclass
class RelearnResult:
    """The curves of one relearning run and what they say."""

    config: RelearnConfig
    run: dict
    metric: str
    curves: dict[str, list[dict]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    generalisation: dict | None = None
    """Subnetworks: :func:`~circuitcut.robustness.family.generalisation` on the same facts."""
    probe: dict | None = None
    """Subnetworks: :func:`~circuitcut.robustness.probe.probe` on the subjects of the same facts."""

    def recovery(self) -> dict[str, dict]:
        """:func:`steps_to_recover` for every removal, against the original model's value at step 0."""
        if "original" not in self.curves:
            return {}
        reference = self.curves["original"][0]["forget"][self.metric]
        return {name: steps_to_recover(curve, reference, self.metric, self.config.recover)
                for name, curve in self.curves.items() if name != "original"}

    def summary(self) -> str:
        """Per curve: forget and retain at the start and end, and steps to recovery."""
        m = self.metric
        lines = [f"relearning {self.run.get('folder')} ({self.run.get('kind')}): forget {m}, "
                 f"{self.config.steps} steps of {self.config.batch_size}, lr {self.config.lr:g}, {self.config.hold}",
                 f"{'removal':10s} {'forget start':>12s} {'forget end':>10s} {'retain start':>12s} {'retain end':>10s}  "
                 f"steps (tokens) to {self.config.recover:.0%} recovery"]
        recovery = self.recovery()
        for name, curve in self.curves.items():
            r = recovery.get(name)
            told = ("reference" if r is None else f"{r['step']} ({r['tokens']} tokens), after {r['after']}"
                    if r["step"] is not None else r["note"])
            lines.append(f"{name:10s} {curve[0]['forget'][m]:12.2f} {curve[-1]['forget'][m]:10.2f} "
                         f"{curve[0]['retain'][m]:12.2f} {curve[-1]['retain'][m]:10.2f}  {told}")
        return "\n".join(lines)

    def save(self, folder: str | Path, start: Mapping | None = None) -> Path:
        """Write relearn.json with the provenance of ``start`` (the run's start; by default this save's)."""
        path = Path(folder) / RESULT
        write_config(path, {"config": self.config.to_dict(), "run": self.run, "metric": self.metric,
                            "curves": self.curves, "seconds": self.seconds, "recovery": self.recovery(),
                            "generalisation": self.generalisation, "probe": self.probe}, start)
        return path

    @classmethod
    def load(cls, folder: str | Path) -> RelearnResult:
        data = read_json(Path(folder) / RESULT)
        return cls(RelearnConfig.from_dict(data["config"]), data["run"], data["metric"], data["curves"],
                   data.get("seconds", {}), data.get("generalisation"), data.get("probe"))


def relearn(
    model: TransformerBridge,
    run: str | Path | PruneRun | SubnetRun,
    config: RelearnConfig | None = None,
    *,
    task: RelearnTask | None = None,
    progress: bool = True,
) -> RelearnResult:
    """Fine-tune the original model, the method's removal and a random one of the same size; save the curves.

    For a subnetwork, the remaining model's generalisation to other facts of its family and to a
    sibling family, and a linear probe for the family on the subjects, are measured first.
    ``task`` overrides the data built from the run (it is checked for overlap all the same). The
    model's weights are restored afterwards.

    Example:
        >>> result = relearn(model, "runs/p", RelearnConfig(steps=16))
        >>> result.recovery()["selective"]["step"], result.recovery()["random"]["step"]
    """
    config = config or RelearnConfig()
    if isinstance(run, (PruneRun, SubnetRun)):
        run.check_model(model)
    else:
        run = open_run(run, model, step=config.step)
    result = _open_result(run, config)
    removals = [Removal("original", None), *run.removals(config.seed)]
    todo = [r for r in removals if r.name not in result.curves]
    finished = not todo and (isinstance(run, PruneRun) or result.generalisation is not None)
    if finished and task is None:
        return result  # read back: nothing to score or fine-tune again
    run_start = provenance()  # the several saves below record this start once
    task = task or build_task(model, run, config)
    task.check()
    result.metric = task.metric
    if task.family and result.generalisation is None:
        result.generalisation = generalisation(model, run, config.facts, task.family)
        result.probe = probe(model, run, task.family, random_seeds=config.facts.random_seeds, seed=config.seed)
        result.save(run.folder, run_start)
    bar = tqdm(total=len(removals) * config.steps, initial=(len(removals) - len(todo)) * config.steps,
               desc="relearn", disable=not progress)
    snapshot = [p.detach().clone() for p in model.parameters()]
    flags = [p.requires_grad for p in model.parameters()]
    try:
        for removal in todo:
            bar.set_postfix(removal=removal.name)
            start = time.perf_counter()
            result.curves[removal.name] = _curve(model, removal, task, config, bar)
            result.seconds[removal.name] = time.perf_counter() - start
            result.save(run.folder, run_start)
            _restore(model, snapshot)
    finally:
        _restore(model, snapshot)
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
        bar.close()
    return result


def _open_result(run: PruneRun | SubnetRun, config: RelearnConfig) -> RelearnResult:
    """A fresh result, or the finished curves of an earlier relearning run with the same settings."""
    path = run.folder / RESULT
    described = {**run.describe(), "removed": {r.name: r.size() for r in run.removals(config.seed)}}
    if not path.exists():
        return RelearnResult(config, described, "")
    saved = RelearnResult.load(run.folder)
    if saved.config != config or saved.run.get("step") != described.get("step"):
        changed = sorted(k for k, v in config.to_dict().items() if saved.config.to_dict().get(k) != v)
        raise ValueError(f"{path} holds relearning curves with other settings ({', '.join(changed) or 'step'}): "
                         f"pass the same settings to resume, or delete {path} to start over.")
    return saved


def _curve(model: TransformerBridge, removal: Removal, task: RelearnTask, config: RelearnConfig, bar) -> list[dict]:
    params = _trainable(model, config.train)
    generator = torch.Generator().manual_seed(config.seed)  # the same batches for every removal
    order = torch.empty(0, dtype=torch.long)
    points, curve, tokens = set(eval_steps(config.steps)), [], 0
    with removal.held(model, config.hold):
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
        for step in range(config.steps + 1):
            if step in points:
                curve.append({"step": step, "tokens": tokens, "forget": task.forget.evaluate(model),
                              "retain": task.retain.evaluate(model)})
                bar.set_postfix(removal=removal.name, forget=f"{curve[-1]['forget'][task.metric]:.1f}")
            if step == config.steps:
                break
            if len(order) < config.batch_size:  # a new epoch in a new seeded order
                order = torch.cat([order, torch.randperm(len(task.train), generator=generator)])
            rows, order = order[: config.batch_size], order[config.batch_size :]
            optimizer.zero_grad(set_to_none=True)
            task.train.loss(model, rows).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            tokens += task.train.n_tokens(rows)
            bar.update()
    return curve


def _trainable(model: TransformerBridge, which: Trainable) -> list[torch.nn.Parameter]:
    """The parameters fine-tuned; the others get no gradient."""
    params = []
    for name, p in model.named_parameters():
        train = which == "all" or ".mlp." in name
        p.requires_grad_(train)
        if train:
            params.append(p)
    return params


def _restore(model: TransformerBridge, snapshot: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, saved in zip(model.parameters(), snapshot):
            p.copy_(saved)

"""The selective-pruning loop, its random-pruning baseline and their run folders.

Each step collects neuron statistics on the *forget* and *retain* data with the current mask in
place, scores every still-present unit, a neuron or a whole attention head
(:mod:`~circuitcut.pruning.scoring`), and removes the highest-scoring ``frac`` of each site kind's units.
After each step both datasets' evaluation splits, disjoint from the statistics splits, are scored.
Random pruning removes as many units per step, chosen uniformly among those still present.

Every finished step is written to the run folder before the next begins (mask, then history as
the commit point), so an interrupted run resumes where it stopped and ends with the same masks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from circuitcut import distributed
from circuitcut.data.corpora import corpus_notes
from circuitcut.evaluate import TokenMetrics, evaluate_tokens
from circuitcut.masks import Mask, mean_activations
from circuitcut.pruning.config import RECORDED_DEFAULTS, PruningConfig
from circuitcut.pruning.data import PruningData
from circuitcut.pruning.report import drops, steps_frame, summary_text
from circuitcut.pruning.scoring import next_removal, random_scores, selectivity_scores, unit_scores
from circuitcut.runs import atomic_path, check_out_folder, check_same_settings, read_json, write_config, write_json
from circuitcut.sites import ModelShape, unit_site
from circuitcut.special_tokens import window_prefix
from circuitcut.stats import NeuronStats, collect_stats, finish_stats, stats_hooks

if TYPE_CHECKING:
    import pandas as pd

Method = Literal["selective", "random"]


def run_settings(config: PruningConfig, model: TransformerBridge) -> dict:
    """Everything that decides a run's results, as ``config.json`` records it: the config, the
    model's name and dtype, and the special tokens each window starts with."""
    tokenizer = model.tokenizer
    return json.loads(json.dumps({
        **config.to_dict(),
        "model": ModelShape.of(model).name,
        "dtype": str(next(model.parameters()).dtype),
        "window_prefix": tokenizer.convert_ids_to_tokens(window_prefix(tokenizer)),
    }))


@dataclass
class PruningResult:
    """What a run found: per-step history for each method, the final masks and the config."""

    config: PruningConfig
    history: list[dict]
    masks: dict[str, Mask]
    importances: dict[str, Float[Tensor, "layer neuron"]] = field(default_factory=dict)
    """Forget and retain importance of every neuron on the unpruned model (``forget.mlp`` ...)."""
    corpus_notes: dict[str, list[str]] = field(default_factory=dict)
    """Per dataset (``forget``, ``retain``), what reading its corpus decided: files read in the fallback
    encoding, binary files skipped (:func:`circuitcut.data.corpora.corpus_notes`)."""

    def steps(self, method: Method) -> list[dict]:
        """The history of one method, starting with the unpruned model at step 0."""
        return [h for h in self.history if h["method"] in ("original", method)]

    def selectivity(self, method: Method, metric: str = "top1") -> dict:
        """``max over steps of (forget drop - retain drop)`` in relative percent (docs/metrics.md)."""
        base, *rest = self.steps(method)
        best = {"selectivity": 0.0, "step": 0, "fraction": 0.0, "forget_drop": 0.0, "retain_drop": 0.0}
        for h in rest:
            fd, rd = drops(base, h, metric)
            if fd - rd > best["selectivity"] or best["step"] == 0:
                best = {"selectivity": fd - rd, "step": h["step"], "fraction": h["fraction"],
                        "forget_drop": fd, "retain_drop": rd}
        return best

    def summary(self) -> str:
        """A plain-text table of the run, one row per step and method, plus selectivity."""
        return summary_text(self)

    def to_frame(self) -> pd.DataFrame:
        """The history as a pandas DataFrame, one row per step and method, with drops and selectivity
        (columns: :func:`~circuitcut.pruning.report.step_rows`)."""
        return steps_frame(self.history)

    @classmethod
    def load(cls, out_dir: str | Path, model: TransformerBridge | None = None) -> PruningResult:
        """Read a run folder; with ``model``, refuse masks made for another model."""
        out = Path(out_dir)
        history = read_json(out / "history.json")
        masks = {m: Mask.load(out / f"{m}_mask.safetensors", model)
                 for m in ("selective", "random") if (out / f"{m}_mask.safetensors").exists()}
        importances = load_file(out / "importance.safetensors") if (out / "importance.safetensors").exists() else {}
        notes = read_json(out / "corpora.json") if (out / "corpora.json").exists() else {}
        return cls(PruningConfig.from_dict(read_json(out / "config.json")), history, masks, importances, notes)


class _Run:
    """One pruning run's state and its folder; each finished step is saved before the next."""

    def __init__(self, model: TransformerBridge, config: PruningConfig, out_dir: Path | None, blank: Mask):
        self.model, self.config, self.out, self.blank = model, config, out_dir, blank
        # Under torchrun every rank reads the folder, only rank 0 writes it.
        self.write = out_dir is not None and distributed.is_main_process()
        self.shape = ModelShape.of(model)
        self.per_step = config.per_step(self.shape)
        self.history: list[dict] = []
        self.masks: dict[str, Mask] = {}
        self.importances: dict[str, Tensor] = {}
        if out_dir is not None:
            self._open_folder()

    def _open_folder(self) -> None:
        """Continue the run in the folder (``prune`` has refused a full folder unless resuming) or start one."""
        out = self.out
        settings = run_settings(self.config, self.model)
        if (out / "config.json").exists():
            check_same_settings(out, read_json(out / "config.json"), settings, RECORDED_DEFAULTS)
            self.history = read_json(out / "history.json") if (out / "history.json").exists() else []
            if (out / "importance.safetensors").exists():
                self.importances = load_file(out / "importance.safetensors")
            for method in {h["method"] for h in self.history} - {"original"}:
                last = max(h["step"] for h in self.history if h["method"] == method)
                self.masks[method] = Mask.load(self._mask_path(method, last), self.model)
        else:
            distributed.barrier()  # every rank has seen the folder empty before rank 0 writes
        if self.write:  # a resume too, which adds its provenance to the first start's
            write_config(out / "config.json", settings)

    def _mask_path(self, method: str, step: int) -> Path:
        return self.out / "steps" / f"{method}_{step:03d}.safetensors"

    def done(self, method: str) -> tuple[int, Mask]:
        """The last finished step of a method and a copy of its mask (step 0, the blank mask if none)."""
        steps = [h["step"] for h in self.history if h["method"] == method]
        if not steps:
            return 0, self.blank.copy()
        return max(steps), self.masks[method].copy()

    def record(self, method: str, step: int, mask: Mask, forget: TokenMetrics, retain: TokenMetrics) -> None:
        self.history.append({"method": method, "step": step, "fraction": mask.fraction(),
                             "per_layer": {k: v.sum(dim=1).tolist() for k, v in mask.by_kind().items()},
                             "forget": forget.to_dict(), "retain": retain.to_dict()})
        if method != "original":
            self.masks[method] = mask.copy()
        if not self.write:
            return
        if method != "original":
            mask.save(self._mask_path(method, step), {"method": method, "step": str(step)})
            mask.save(self.out / f"{method}_mask.safetensors", {"method": method, "step": str(step)})
        write_json(self.out / "history.json", self.history)

    def save_importances(self, forget: NeuronStats, retain: NeuronStats) -> None:
        imp = self.config.importance
        self.importances = {f"{name}.{k}": v.contiguous() for name, stats in (("forget", forget), ("retain", retain))
                            for k, v in stats.importance(imp).items()}
        if self.write:
            with atomic_path(self.out / "importance.safetensors") as tmp:
                save_file(self.importances, str(tmp))


def prune(
    model: TransformerBridge,
    config: PruningConfig | None = None,
    *,
    data: PruningData | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> PruningResult:
    """Run selective pruning (and the random baseline) and return the history and masks.

    The model's weights are not changed: masks act through hooks. Apply a result permanently with
    ``result.masks["selective"].remove_from(model)``.

    Under ``torchrun`` (after :func:`circuitcut.distributed.setup`) every rank takes its share of
    each token set, statistics and metrics are summed across ranks, every rank returns the same
    result, and only rank 0 writes ``out_dir`` and shows progress.

    Example:
        >>> import circuitcut
        >>> model = circuitcut.load_model()
        >>> result = circuitcut.prune(model, circuitcut.PruningConfig(steps=3, tokens=4096))
        >>> print(result.summary())
    """
    config = config or PruningConfig()
    out = check_out_folder(out_dir, resume=resume) if out_dir is not None else None  # before the slow part
    notes = {}
    if data is None:
        data = PruningData.from_config(model.tokenizer, config)
        notes = {name: corpus_notes(getattr(config, name)) for name in ("forget", "retain")}
    kinds = config.site_kinds
    blank = Mask.empty(ModelShape.of(model), kinds)  # removes nothing, filled as every later mask
    if config.fill == "mean":
        blank = blank.with_means(mean_activations(model, data.retain_stats, kinds, config.batch_size))
    run = _Run(model, config, out, blank)
    if run.write and notes:
        write_json(out / "corpora.json", notes)
    bs = config.batch_size
    # Under torchrun (a process group is up) every rank takes its share of each token set and
    # the statistics and metrics are reduced across ranks; see circuitcut.distributed.
    parallel = distributed.is_distributed()
    progress = progress and distributed.is_main_process()
    eval_splits = (("forget", data.forget_eval), ("retain", data.retain_eval))

    def evaluate(mask: Mask, collect: bool = False) -> tuple[TokenMetrics, TokenMetrics, tuple | None]:
        """Both evaluation splits; with ``collect``, also their statistics from the same passes."""
        hooks = mask.hooks(model)
        metrics, stats = [], []
        for name, tokens in eval_splits:
            st = NeuronStats.empty(run.shape, kinds) if collect else None
            metrics.append(evaluate_tokens(model, tokens, fwd_hooks=hooks, skip_common=config.skip_common,
                                           stat_hooks=stats_hooks(st) if collect else (), batch_size=bs,
                                           desc=f"evaluate {name}", across_ranks=parallel))
            if collect:
                stats.append(finish_stats(st, distributed.shard(tokens), None, parallel))
        return metrics[0], metrics[1], tuple(stats) if collect else None

    def statistics(mask: Mask) -> tuple[NeuronStats, NeuronStats]:
        hooks = mask.hooks(model)
        splits = eval_splits if config.stats_on_eval else (("forget", data.forget_stats), ("retain", data.retain_stats))
        return tuple(collect_stats(model, tokens, kinds, fwd_hooks=hooks, batch_size=bs,
                                   desc=f"statistics {name}", across_ranks=parallel)
                     for name, tokens in splits)

    methods: list[Method] = ["selective", "random"] if config.baseline else ["selective"]
    total = 1 + config.steps * len(methods)
    evaluated_original = any(h["method"] == "original" for h in run.history)
    done = int(evaluated_original) + sum(run.done(m)[0] for m in methods)
    eps = {unit_site(k): config.eps_for(k) for k in config.sites}
    # With stats_on_eval, the statistics of the mask just evaluated (None: collect them when needed).
    pending: tuple[NeuronStats, NeuronStats] | None = None
    with tqdm(total=total, initial=done, desc="pruning steps", disable=not progress) as bar:
        if not evaluated_original:
            collect = config.stats_on_eval and run.done("selective")[0] < config.steps
            f_metrics, r_metrics, pending = evaluate(run.blank, collect)
            run.record("original", 0, run.blank, f_metrics, r_metrics)
            bar.update()
        for method in methods:
            start, mask = run.done(method)
            scores = None
            for step in range(start + 1, config.steps + 1):
                bar.set_postfix(method=method, step=step)
                if method == "random":
                    scores = random_scores(run.shape, config.sites, config.seed, step)
                elif scores is None or not config.one_shot:
                    # One-shot runs rank once, from the unpruned model's statistics.
                    seen = run.blank if config.one_shot else mask
                    forget, retain = pending if pending is not None else statistics(seen)
                    pending = None
                    scores = unit_scores(selectivity_scores(forget, retain, config.importance, eps), config.sites,
                                         run.shape, config.head_score)
                    # Reduced sums are the same on every rank; broadcasting makes the masks agree
                    # bit for bit whatever the reduction order.
                    distributed.broadcast_(list(scores.values()))
                    if step == 1:
                        run.save_importances(forget, retain)
                mask = mask | Mask.from_kinds(run.shape, next_removal(scores, mask.by_kind(), run.per_step, run.shape))
                collect = (config.stats_on_eval and method == "selective" and not config.one_shot
                           and step < config.steps)
                f_metrics, r_metrics, pending = evaluate(mask, collect)
                run.record(method, step, mask, f_metrics, r_metrics)
                bar.update()
    distributed.barrier()  # rank 0 has written the last step before any rank returns
    return PruningResult(config, run.history, run.masks, run.importances, notes)

"""Regenerate every figure from real runs on the embedded model: PNG for the README, HTML to explore.

The experiments behind the figures live here; the views in :mod:`circuitcut.plots` only draw their
results. ``circuitcut figures`` is the command line for :func:`make_figures`.

Runs are kept in a folder (``runs_dir``, default :func:`runs_folder`) and
reused, so a second call only redraws. ``budget="small"`` shrinks every run with
:func:`small_budget` (tiny token budgets and step counts): the same code path, fast, for
tests and notebooks; its numbers mean nothing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Literal, TypeVar

import plotly.graph_objects as go
import torch
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.contexts import top_activating_contexts
from circuitcut.data.corpora import corpus_windows
from circuitcut.data.kg import KGError
from circuitcut.evaluate import sparsity_text
from circuitcut.models import cache_dir, load_model
from circuitcut.plots import save_figure
from circuitcut.plots.neurons import importance_heatmap, importance_scatter, neuron_contexts, neurons_per_layer
from circuitcut.plots.pruning import drop_curves, percent_pruned, pruning_curves
from circuitcut.plots.robustness import family_generalisation, relearn_curves
from circuitcut.plots.subnetworks import (
    DATASET_LABELS, jaccard_matrix, overlap_counts, overlap_per_layer, overlap_summary, selection_curves,
    chosen_point, subnetwork_anatomy, subnetwork_effect, tradeoff, training_curves,
)
from circuitcut.pruning import PruningConfig, PruningResult, prune
from circuitcut.robustness import FamilyConfig, RelearnConfig, RelearnResult, relearn
from circuitcut.subnetwork import (SubnetworkConfig, SubnetworkResult, find_subnetwork, preset, results_table,
                                  seed_overlaps)

Budget = Literal["full", "small"]
BUDGETS: tuple[Budget, ...] = ("full", "small")
Config = TypeVar("Config", PruningConfig, SubnetworkConfig, RelearnConfig)

PRUNING = PruningConfig(forget="python", retain="prose", sites=("mlp",), importance="abs", steps=5, frac=0.02,
                        tokens=8192)
"""The pruning run behind the figures: forget Python, retain prose, feed-forward neurons, 5 steps of 2 %."""
SCHEDULE_150 = dict(steps=150, lr_steps=None, validate_every=25, early_stop=None, checkpoint_every=25)
"""The schedule of the runs behind figures/: 150 steps at lr 0.1, a validation every 25, no early stop (the
defaults before subnetwork runs were compressed to 60 steps; docs/results.md compares the two)."""
SUBNETWORK = SubnetworkConfig(**SCHEDULE_150)
"""The neuron runs behind the figures: the defaults (feed-forward neurons of the top half, layers 15-29)."""
WEIGHT_SUBNETWORK = preset("weights", **SCHEDULE_150)
"""The weight runs behind the figures: preset ``weights`` (every matrix of the top half)."""
_TARGETS = {"animal": "isa:animal", "food": "isa:food.n.01", "vehicle": "isa:vehicle.n.01"}
SUBNETWORK_RUNS = {
    **{label: (target, 0, SUBNETWORK) for label, target in _TARGETS.items()},
    **{f"{label}, seed 1": (target, 1, SUBNETWORK) for label, target in _TARGETS.items()},
    **{f"{label}, weights": (_TARGETS[label], 0, WEIGHT_SUBNETWORK) for label in _TARGETS},
    "animal, weights, seed 1": (_TARGETS["animal"], 1, WEIGHT_SUBNETWORK),
}
"""Label -> (target, mask seed, config): three targets under two mask seeds each, on the same facts (every run
samples its facts with seed 0), to tell target overlap from seed noise, and the three targets with weight masks
(animal under both seeds).
All go into ``SUBNETWORKS.md``; the first is shown in detail."""
RELEARN = RelearnConfig()
"""Relearning behind the figures (``circuitcut relearn``'s defaults), after the pruning run's best step and
after the subnetworks of the first ``RELEARN_TARGETS`` targets."""
RELEARN_TARGETS = 2
FIGURE_NAMES = ("pruning_curves", "drop_curves", "neurons_per_layer", "importance_heatmap", "importance_scatter",
                "neuron_contexts", "subnetwork_effect", "subnetwork_training", "subnetwork_selection",
                "subnetwork_tradeoff", "subnetwork_anatomy", "subnetwork_neurons_per_layer", "selective_vs_learned",
                "subnetwork_jaccard", "subnetwork_overlap_per_layer", "subnetwork_effect_weights",
                "subnetwork_selection_weights", "subnetwork_anatomy_weights", "family_generalisation")
"""The figures :func:`make_figures` draws (and ``relearn_<label>`` per relearned run), the names ``only`` takes."""
CONTEXT_TOKENS = 16384
"""Tokens searched for a neuron's top-activating contexts."""


def small_budget(config: Config) -> Config:
    """The same run with tiny budgets; for tests and ``CIRCUITCUT_SMALL=1``."""
    if isinstance(config, PruningConfig):
        return dataclasses.replace(config, steps=2, tokens=256)
    if isinstance(config, RelearnConfig):
        return dataclasses.replace(config, steps=2, eval_tokens=128,
                                   facts=FamilyConfig(n_facts=4, candidates=40, random_seeds=1))
    return dataclasses.replace(config, steps=3, lr_steps=None, n_candidates=40, control_candidates=100, n_target=5, min_target=2,
                               n_control=8, n_control_val=4, n_control_new=4, control_batch=6, lm_pool_tokens=128,
                               window=64, lm_batch=2, val_lm_tokens=128, eval_lm_tokens=128, random_seeds=1,
                               log_every=1, validate_every=1)


def sized(config: Config, budget: Budget) -> Config:
    if budget not in BUDGETS:
        raise ValueError(f"Unknown budget '{budget}': choose from {', '.join(BUDGETS)}.")
    return small_budget(config) if budget == "small" else config


def runs_folder(budget: Budget) -> Path:
    """Where the figures' runs are made and kept unless told otherwise: ``$CIRCUITCUT_CACHE/figure-runs/<budget>``.

    The notebooks use the same folders, so after ``circuitcut figures`` they load its runs instead of training."""
    return cache_dir() / "figure-runs" / budget


def subnetwork_run(label: str, budget: Budget, runs_dir: Path) -> tuple[SubnetworkConfig, Path]:
    """The config and run folder of ``SUBNETWORK_RUNS[label]`` (facts sampled with seed 0 for every run)."""
    target, seed, base = SUBNETWORK_RUNS[label]
    weights = "-weights" if base.granularity == "weight" else ""
    folder = runs_dir / f"subnetwork-{target.replace(':', '-')}-seed{seed}{weights}"
    return sized(dataclasses.replace(base, target=target, seed=seed, data_seed=0), budget), folder


def find_subnetworks(
    model: TransformerBridge, budget: Budget, runs_dir: Path, log: Callable[[str], None] = print
) -> dict[str, Path]:
    """Find (or find finished) each subnetwork of ``SUBNETWORK_RUNS``: label -> its run folder."""
    folders = {}
    for label in SUBNETWORK_RUNS:
        config, folder = subnetwork_run(label, budget, runs_dir)
        try:
            find_subnetwork(model, config, folder)
            folders[label] = folder
        except KGError as err:  # too few known facts for this target on this model: draw the others
            log(f"subnetwork '{label}' skipped: {err}")
    return folders


Figures = dict[str, tuple[go.Figure, str]]
"""Figure name -> (figure, caption with the numbers behind it)."""


def _top_neuron(result: PruningResult, kind: str = "mlp") -> tuple[int, int]:
    """The neuron with the highest selective-pruning score on the unpruned model (pruned first)."""
    forget, retain = result.importances[f"forget.{kind}"], result.importances[f"retain.{kind}"]
    score = forget / (retain + result.config.eps_for(kind))
    layer, neuron = divmod(int(score.argmax()), score.shape[1])
    return layer, neuron


def pruning_figures(model: TransformerBridge, result: PruningResult, context_tokens: int) -> Figures:
    config = result.config
    best, rand = result.selectivity("selective"), result.selectivity("random")
    base, last = result.history[0], result.steps("selective")[-1]
    forget, retain = result.importances["forget.mlp"], result.importances["retain.mlp"]
    layer, neuron = _top_neuron(result)
    windows = corpus_windows(config.forget, model.tokenizer, n_tokens=context_tokens, window=config.window,
                             split="eval", seed=config.seed)
    # Rank as the importance does: "freq" counts positive activations, the others magnitudes.
    contexts = top_activating_contexts(model, windows, layer, neuron,
                                       rank_by="max" if config.importance == "freq" else "abs")
    per_layer = result.masks["selective"].by_kind()["mlp"].sum(1).tolist()
    top_layers = sorted(range(len(per_layer)), key=lambda i: -per_layer[i])[:3]
    eps = config.eps_for("mlp")
    return {
        "pruning_curves": (pruning_curves(result), (
            f"Top-1 accuracy and perplexity vs feed-forward neurons pruned ({config.tokens} tokens per dataset). "
            f"Original: forget (Python) {base['forget']['top1']:.1f}%, retain (prose) {base['retain']['top1']:.1f}%; "
            f"after {percent_pruned(last):.0f}% selectively pruned {last['forget']['top1']:.1f}% and "
            f"{last['retain']['top1']:.1f}%. Selectivity {best['selectivity']:.1f} at step {best['step']} "
            f"(forget drop {best['forget_drop']:.1f}%, retain drop {best['retain_drop']:.1f}%); random "
            f"pruning {rand['selectivity']:.1f}.")),
        "drop_curves": (drop_curves({"mlp": result}), (
            f"Relative forget drop vs retain drop in top-1 accuracy per step: selective pruning reaches "
            f"{best['forget_drop']:.1f}% vs {best['retain_drop']:.1f}%, random pruning {rand['forget_drop']:.1f}% vs "
            f"{rand['retain_drop']:.1f}% at its best step.")),
        "neurons_per_layer": (neurons_per_layer(result.masks), (
            f"Feed-forward neurons removed per layer after {percent_pruned(last):.0f}% pruning "
            f"({sum(per_layer)} neurons per method); selective pruning removes the most in layers "
            f"{', '.join(f'{i} ({per_layer[i]})' for i in top_layers)}.")),
        "importance_heatmap": (importance_heatmap(forget, retain, eps=eps, sort=True), (
            f"Score forget/(retain+{eps:g}) of all {forget.numel()} feed-forward neurons on the unpruned model, "
            f"sorted within each layer; the highest is layer {layer} neuron {neuron} "
            f"(mean |activation| {float(forget[layer, neuron]):.3g} on Python vs {float(retain[layer, neuron]):.3g} "
            f"on prose).")),
        "importance_scatter": (importance_scatter(forget, retain, result.masks["selective"].by_kind()["mlp"]), (
            f"Forget (Python) vs retain (prose) mean |activation| of every feed-forward neuron, coloured by "
            f"layer; the {sum(per_layer)} selectively pruned neurons in red.")),
        "neuron_contexts": (neuron_contexts(contexts), (
            f"The Python contexts (evaluation split, {windows.numel()} tokens) where layer {layer} neuron "
            f"{neuron}, the first neuron selective pruning removes, reaches its largest "
            f"{'activation' if contexts.rank_by == 'max' else '|activation|'}; strongest peak "
            f"{contexts.peaks[0][2]:.2f} on '{contexts.tokens[0][contexts.offsets.index(0)]}'.")),
    }


def _changes(metrics: dict) -> str:
    change, rand = metrics["change"], metrics["random"]["change"]
    return "; ".join(f"{DATASET_LABELS[n].replace('<br>', ' ')} dPPL {change[n]['dppl']:+.1f}% "
                     f"(random {rand[n]['dppl']['mean']:+.1f} ± {rand[n]['dppl']['std']:.1f}%)"
                     for n in ("target", "target_paraphrase", "control_new", "lm") if n in change and n in rand)


def _effect(r: SubnetworkResult) -> tuple[go.Figure, str]:
    return subnetwork_effect(r.metrics), (
        f"Removing the learned {r.config.target} subnetwork ({r.config.units}, {r.config.steps} steps, sparsity "
        f"{sparsity_text(r.mask.sparsity())}%, whole-tail dPPL): {_changes(r.metrics)}; target top-10 "
        f"{r.metrics['original']['target']['top10']:.0f}% -> {r.metrics['remaining']['target']['top10']:.0f}%.")


def _selection(r: SubnetworkResult) -> tuple[go.Figure, str]:
    chosen = r.metrics["selection"]
    return selection_curves(r.metrics), (
        f"The validation figures the selection rule reads for {r.config.target} ({r.config.units}); it chose step "
        f"{chosen['chosen_step']} ({'all bounds kept' if chosen['rule_met'] else 'no mask kept every bound'}).")


def _tradeoff(subnetworks: dict[str, SubnetworkResult]) -> tuple[go.Figure, str]:
    """Every run's validations and chosen mask against the bounds, with how many of each keep both, per granularity."""
    def kept(top10: float, control: float, rule: dict) -> bool:
        return top10 <= rule["max_target_top10"] and control <= rule["max_control_dppl"]

    counts = []
    for units in dict.fromkeys(r.config.units for r in subnetworks.values()):
        runs = [r.metrics for r in subnetworks.values() if r.config.units == units]
        vals = [(v, m["selection"]["rule"]) for m in runs for v in m["selection"]["validations"]]
        chosen = sum(kept(*chosen_point(m), m["selection"]["rule"]) for m in runs)
        counts.append(f"{units}: {sum(kept(v['target_top10'], v['control_dppl'], rule) for v, rule in vals)} of "
                      f"{len(vals)} validations and {chosen} of {len(runs)} chosen masks")
    return tradeoff({label: r.metrics for label, r in subnetworks.items()}), (
        "Target rows left in the top 10 against ControlKG damage, for every run (validation data at each "
        "checkpoint; reported data for the chosen mask: the worse of training and paraphrased templates, and "
        "never-seen controls). Inside both bounds (shaded): " + "; ".join(counts) + ".")


def _anatomy(r: SubnetworkResult) -> tuple[go.Figure, str]:
    size = r.mask.summary()
    busiest = max(size["per_layer"].items(), key=lambda kv: kv[1]["subnetwork"])
    return subnetwork_anatomy(r.mask), (
        f"Where the {r.config.target} subnetwork sits: {size['n_subnetwork']:,} of {size['n_units']:,} "
        f"{r.config.units} of layers {min(size['per_layer'])}-{max(size['per_layer'])}; most in layer {busiest[0]} "
        f"({busiest[1]['subnetwork']:,}, {busiest[1]['percent']:.2g}% of its units).")


def subnetwork_figures(subnetworks: dict[str, SubnetworkResult], pruning: PruningResult) -> Figures:
    """The first run in detail, overlaps between runs of its granularity, and the first run of the other
    granularity (weights beside neurons) in brief."""
    first_label, first = next(iter(subnetworks.items()))
    # Overlap is counted between masks of the same units (neurons, or weights) as the first.
    masks = {label: r.mask for label, r in subnetworks.items() if r.config.granularity == first.config.granularity}
    labels = list(masks)
    selective = pruning.masks["selective"]
    shared = overlap_summary(selective, first.mask)
    size = first.mask.summary()
    pairs = [(labels[0], other) for other in labels[1:]]
    jaccards = {f"{a} vs {b}": overlap_summary(masks[a], masks[b]) for a, b in pairs}
    figures = {
        "subnetwork_effect": _effect(first),
        "subnetwork_training": (training_curves(first.history), (
            f"Loss terms and sparsity while learning the {first.config.target} mask; sparsity of the evaluation "
            f"mask at the last step {sparsity_text(first.history[-1]['sparsity'])}%.")),
        "subnetwork_selection": _selection(first),
        "subnetwork_tradeoff": _tradeoff(subnetworks),
        "subnetwork_anatomy": _anatomy(first),
        "subnetwork_neurons_per_layer": (neurons_per_layer({"learned " + first_label: first.mask,
                                                            "selective pruning (Python)": selective}),
                                         "Learned subnetwork neurons per layer beside the selectively pruned ones."),
        "selective_vs_learned": (
            overlap_counts(selective, first.mask, ("selective pruning (Python)", f"learned mask ({first_label})")),
            f"Per layer of the learned mask ({min(size['per_layer'])}-{max(size['per_layer'])}), neurons removed by "
            f"selective pruning of Python only ({shared['only_a']}), by the learned {first.config.target} mask only "
            f"({shared['only_b']}), or by both ({shared['both']}): Jaccard {shared['jaccard']:.3f}, against "
            f"{shared['chance']:.3f} for random sets of the same sizes."),
    }
    if pairs:  # comparisons need a second subnetwork
        figures["subnetwork_jaccard"] = (jaccard_matrix(masks), (
            "Jaccard overlap of the learned subnetworks: "
            + ", ".join(f"{k} {o['jaccard']:.3f} (random sets of the same sizes {o['chance']:.3f})"
                        for k, o in jaccards.items()) + "."))
        figures["subnetwork_overlap_per_layer"] = (overlap_per_layer(masks, pairs=pairs), (
            "Per-layer Jaccard overlap between the first subnetwork and the others, against the random-set "
            "level (dotted)."))
    other = next((r for r in subnetworks.values() if r.config.granularity != first.config.granularity), None)
    if other is not None:
        suffix = f"_{other.config.granularity}s"
        figures |= {"subnetwork_effect" + suffix: _effect(other), "subnetwork_selection" + suffix: _selection(other),
                    "subnetwork_anatomy" + suffix: _anatomy(other)}
    return figures


def relearn_runs(
    model: TransformerBridge, pruning_folder: Path, folders: dict[str, Path], subnetworks: dict[str, SubnetworkResult],
    config: RelearnConfig,
) -> dict[str, RelearnResult]:
    """:func:`~circuitcut.robustness.relearn` on the pruning run and on the first subnetwork of each of the
    first ``RELEARN_TARGETS`` targets (finished curves are read back from each folder's relearn.json)."""
    results = {"pruning": relearn(model, pruning_folder, config)}
    targets = {}
    for label, result in subnetworks.items():
        targets.setdefault(result.config.target, label)
    for label in list(targets.values())[:RELEARN_TARGETS]:
        results[label] = relearn(model, folders[label], config)
    return results


def relearn_figures(relearned: dict[str, RelearnResult]) -> Figures:
    """One relearning figure per run, and family generalisation across the subnetworks."""
    figures = {}
    for label, result in relearned.items():
        recovery = result.recovery()
        told = "; ".join(f"{name} {_recovered(r)}" for name, r in recovery.items())
        what = "the best step of selective pruning" if label == "pruning" else f"the learned {label} subnetwork"
        figures[f"relearn_{label.replace(' ', '_').replace(',', '')}"] = (relearn_curves(result), (
            f"Fine-tuning on held-out forget data ({result.config.steps} steps of {result.config.batch_size}, lr "
            f"{result.config.lr:g}) with {what} held in place, against random removal of the same size and the "
            f"original model; steps to regain half of what was lost ({result.metric}): {told}."))
    reports = {label: r.generalisation for label, r in relearned.items() if r.generalisation is not None}
    if reports:
        figures["family_generalisation"] = (family_generalisation(reports), (
            "Top-10 of each subnetwork's remaining model on its training facts, on known facts of the same family "
            "about other subjects, and on a sibling family, against random masks of the same size: "
            + "; ".join(_generalised(label, r) for label, r in reports.items()) + "."))
    return figures


def _recovered(r: dict) -> str:
    return f"step {r['step']} ({r['tokens']} tokens)" if r["step"] is not None else r.get("note", "")


def _generalised(label: str, report: dict) -> str:
    parts = []
    for name, orig in report["original"].items():
        learned, rand = report["learned"][name]["top10"], report["random"][name]["top10"]
        parts.append(f"{name} {orig['top10']:.0f} -> {learned:.0f}% (random {rand['mean']:.0f} ± {rand['std']:.0f}%)")
    return f"{label}: " + ", ".join(parts)


def make_figures(
    out_dir: str | Path = "figures",
    budget: Budget = "full",
    *,
    model: TransformerBridge | None = None,
    runs_dir: str | Path | None = None,
    pruning_run: str | Path | None = None,
    subnetwork_runs: dict[str, str | Path] | None = None,
    png: bool = True,
    only: Collection[str] = (),
    log: Callable[[str], None] = print,
) -> dict[str, str]:
    """Regenerate every figure (PNG and HTML) into ``out_dir`` and write their captions to ``CAPTIONS.md``.

    ``pruning_run`` (a run folder) and ``subnetwork_runs`` (label -> result folder; the first is the
    one shown in detail) draw from finished runs. Otherwise the runs of this module's configs are
    made in ``runs_dir``, reusing what is finished there (docs/results.md gives how long the full budget takes).
    ``only`` redraws just the figures named (``importance_scatter`` ...), replacing their captions and keeping
    the others'; relearning then runs only if a relearning figure is named.
    Returns figure name -> caption (with the numbers behind it).
    """
    unknown = [name for name in only if name not in FIGURE_NAMES and not name.startswith("relearn_")]
    if unknown:
        raise ValueError(f"--only {','.join(unknown)}: no such figure; choose from {', '.join(FIGURE_NAMES)}, relearn_*.")
    torch.manual_seed(0)
    model = model or load_model("smollm2")
    runs = Path(runs_dir) if runs_dir is not None else runs_folder(budget)
    start = time.perf_counter()
    pruning_folder = Path(pruning_run) if pruning_run is not None else runs / "pruning-mlp"
    if pruning_run is not None:
        pruning = PruningResult.load(pruning_folder, model)
    else:
        pruning = prune(model, sized(PRUNING, budget), out_dir=pruning_folder, resume=True)
    log(f"pruning run: {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    folders = ({label: Path(f) for label, f in subnetwork_runs.items()} if subnetwork_runs is not None
               else find_subnetworks(model, budget, runs, log))
    subnetworks = {label: SubnetworkResult.load(folder, model) for label, folder in folders.items()}
    log(f"subnetwork runs: {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    relearn_wanted = not only or any(name.startswith(("relearn_", "family_")) for name in only)
    relearned = relearn_runs(model, pruning_folder, folders, subnetworks, sized(RELEARN, budget)) if relearn_wanted else {}
    log(f"relearning: {time.perf_counter() - start:.0f} s")
    figures = {**pruning_figures(model, pruning, CONTEXT_TOKENS if budget == "full" else 512),
               **subnetwork_figures(subnetworks, pruning), **relearn_figures(relearned)}
    if only:
        missing = set(only) - figures.keys()
        if missing:
            raise ValueError(f"--only {','.join(sorted(missing))}: these runs draw no such figure ({', '.join(figures)}).")
        figures = {name: figure for name, figure in figures.items() if name in only}
    for name, (fig, _) in figures.items():
        start = time.perf_counter()
        save_figure(fig, out_dir, name, png=png)
        log(f"  {name}: saved in {time.perf_counter() - start:.1f} s")
    captions = {name: caption for name, (_, caption) in figures.items()}
    if only:
        replace_captions(Path(out_dir) / "CAPTIONS.md", captions)
        return captions
    # Name the default run folder by the cache variable, not this machine's home directory.
    default_runs = "$CIRCUITCUT_CACHE/figure-runs/" + budget if runs_dir is None else str(runs)
    sources = [f"pruning: {pruning_run or default_runs + '/pruning-mlp'} ({pruning.config.steps} steps of "
               f"{pruning.config.frac_text()}, {pruning.config.tokens} tokens per dataset)"]
    sources += [f"subnetwork '{label}': {r.config.target}, {r.config.steps} steps, seed {r.config.seed} "
                f"(facts sampled with seed {r.config.sample_seed}), {r.config.units}"
                for label, r in subnetworks.items()]
    lines = ["# Figures", "", f"Regenerated by `circuitcut.figures.make_figures(budget=\"{budget}\")` from runs on the "
             "embedded model (SmolLM2-135M-Instruct); each PNG has an interactive HTML twin.", "",
             *(f"- {s}" for s in sources), ""]
    lines += [f"- `{name}.png`: {caption}" for name, caption in captions.items()]
    (Path(out_dir) / "CAPTIONS.md").write_text("\n".join(lines) + "\n")
    (Path(out_dir) / "SUBNETWORKS.md").write_text(
        f"# Subnetworks\n\nRegenerated by `circuitcut figures --budget {budget}` with the runs listed in CAPTIONS.md. "
        "dPPL in %, whole tail unless labelled 1st-token; in brackets random masks with as many units per site "
        "(mean ± sd over seeds). ControlKG never seen: control facts used neither in training nor by the "
        "selection rule.\n\n" + results_table(subnetworks) + "\n\n## Same target and facts, two mask seeds\n\n"
        + seed_overlaps(subnetworks) + "\n")
    return captions


def replace_captions(path: Path, captions: dict[str, str]) -> None:
    """Rewrite the caption lines of the figures redrawn, keep every other line (and add new figures at the end)."""
    lines = path.read_text().splitlines() if path.exists() else ["# Figures", ""]
    done = set()
    for i, line in enumerate(lines):
        for name, caption in captions.items():
            if line.startswith(f"- `{name}.png`:"):
                lines[i] = f"- `{name}.png`: {caption}"
                done.add(name)
    lines += [f"- `{name}.png`: {caption}" for name, caption in captions.items() if name not in done]
    path.write_text("\n".join(lines) + "\n")

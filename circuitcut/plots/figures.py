"""Regenerate every figure from real runs on the embedded model: PNG for the README, HTML to explore.

Runs are kept in a folder (``runs_dir``, default ``~/.cache/circuitcut/figure-runs/<budget>``) and
resumed, so a second call only redraws. ``budget="small"`` runs tiny token budgets and step counts:
the same code path in a minute, for tests; its numbers mean nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import plotly.graph_objects as go
import torch
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.data.corpora import corpus_windows
from circuitcut.models import cache_dir, load_model
from circuitcut.plots.neurons import (
    importance_heatmap, importance_scatter, neuron_contexts, neurons_per_layer, top_activating_contexts,
)
from circuitcut.plots.pruning import drop_curves, percent_pruned, pruning_curves
from circuitcut.pruning import PruningConfig, PruningResult, prune

Budget = Literal["full", "small"]


@dataclass(frozen=True)
class FigureBudget:
    steps: int
    tokens: int
    context_tokens: int
    """Tokens searched for a neuron's top-activating contexts."""


BUDGETS: dict[str, FigureBudget] = {
    "full": FigureBudget(steps=5, tokens=8192, context_tokens=16384),
    "small": FigureBudget(steps=2, tokens=256, context_tokens=256),
}


def save_figure(fig: go.Figure, out_dir: str | Path, name: str, png: bool = True) -> list[Path]:
    """``name.html`` (plotly.js from the CDN, so a file stays small) and, unless ``png=False``, ``name.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.html"]
    fig.write_html(paths[0], include_plotlyjs="cdn")
    if png:
        paths.append(out / f"{name}.png")
        fig.write_image(paths[1], scale=1.5)
    return paths


def pruning_config(budget: Budget, sites: tuple[str, ...] = ("mlp",)) -> PruningConfig:
    """The pruning run behind the figures: forget Python, retain prose, abs importance, 2 % per step."""
    b = BUDGETS[budget]
    return PruningConfig(forget="python", retain="prose", sites=sites, importance="abs",
                         steps=b.steps, frac=0.02, tokens=b.tokens)


def _top_neuron(result: PruningResult, kind: str = "mlp") -> tuple[int, int]:
    """The neuron with the highest selective-pruning score on the unpruned model (pruned first)."""
    forget, retain = result.importances[f"forget.{kind}"], result.importances[f"retain.{kind}"]
    score = forget / (retain + result.config.eps_for(kind))
    layer, neuron = divmod(int(score.argmax()), score.shape[1])
    return layer, neuron


def pruning_figures(model: TransformerBridge, budget: Budget, runs_dir: Path) -> dict[str, tuple[go.Figure, str]]:
    """Run (or resume) the pruning run and draw its views; each with a caption giving its numbers."""
    config = pruning_config(budget)
    result = prune(model, config, out_dir=runs_dir / "pruning-mlp", resume=True)
    best, rand = result.selectivity("selective"), result.selectivity("random")
    sel_steps, base = result.steps("selective"), result.history[0]
    last = sel_steps[-1]
    forget, retain = result.importances["forget.mlp"], result.importances["retain.mlp"]
    layer, neuron = _top_neuron(result)
    windows = corpus_windows(config.forget, model.tokenizer, n_tokens=BUDGETS[budget].context_tokens,
                             window=config.window, split="eval", seed=config.seed)
    contexts = top_activating_contexts(model, windows, layer, neuron)
    per_layer = result.masks["selective"].per_layer()["mlp"]
    top_layers = sorted(range(len(per_layer)), key=lambda i: -per_layer[i])[:3]
    eps = config.eps_for("mlp")
    return {
        "pruning_curves": (pruning_curves(result), (
            f"Top-1 accuracy and perplexity vs feed-forward neurons pruned. Original: forget (Python) "
            f"{base['forget']['top1']:.1f}%, retain (prose) {base['retain']['top1']:.1f}%; after "
            f"{percent_pruned(last):.0f}% selectively pruned {last['forget']['top1']:.1f}% and "
            f"{last['retain']['top1']:.1f}%. Selectivity {best['selectivity']:.1f} at step {best['step']} "
            f"(forget drop {best['forget_drop']:.1f}%, retain drop {best['retain_drop']:.1f}%); random "
            f"pruning {rand['selectivity']:.1f}.")),
        "drop_curves": (drop_curves({"mlp": result}), (
            f"Relative forget drop vs retain drop in top-1 accuracy per step: selective pruning reaches "
            f"{best['forget_drop']:.1f}% vs {best['retain_drop']:.1f}%, random pruning stays near the diagonal "
            f"({rand['forget_drop']:.1f}% vs {rand['retain_drop']:.1f}% at its best step).")),
        "neurons_per_layer": (neurons_per_layer(result.masks), (
            f"Feed-forward neurons removed per layer after {percent_pruned(last):.0f}% pruning "
            f"({sum(per_layer)} neurons): selective pruning concentrates in layers "
            f"{', '.join(f'{i} ({per_layer[i]})' for i in top_layers)}; random pruning spreads evenly.")),
        "importance_heatmap": (importance_heatmap(forget, retain, eps=eps, sort=True), (
            f"Score forget/(retain+{eps:g}) of all {forget.numel()} feed-forward neurons on the unpruned model, "
            f"sorted within each layer; the highest is layer {layer} neuron {neuron} "
            f"({float(forget[layer, neuron]):.3g} on Python vs {float(retain[layer, neuron]):.3g} on prose).")),
        "importance_scatter": (importance_scatter(forget, retain, result.masks["selective"].removed["mlp"]), (
            f"Forget (Python) vs retain (prose) mean |activation| of every feed-forward neuron, coloured by "
            f"layer; the {sum(per_layer)} selectively pruned neurons ringed, above the diagonal.")),
        "neuron_contexts": (neuron_contexts(contexts), (
            f"Top-activating Python contexts (evaluation split, {windows.numel()} tokens) of layer {layer} "
            f"neuron {neuron}, the first neuron selective pruning removes; peak activation "
            f"{contexts.peaks[0][2]:.2f}.")),
    }


def make_figures(
    out_dir: str | Path = "figures",
    budget: Budget = "full",
    *,
    model: TransformerBridge | None = None,
    runs_dir: str | Path | None = None,
    png: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, str]:
    """Regenerate every figure (PNG and HTML) into ``out_dir`` and write their captions to ``CAPTIONS.md``.

    Returns figure name -> caption (with the numbers behind it).
    """
    if budget not in BUDGETS:
        raise ValueError(f"Unknown budget '{budget}': choose from {', '.join(BUDGETS)}.")
    torch.manual_seed(0)
    model = model or load_model("smollm2")
    runs = Path(runs_dir) if runs_dir is not None else cache_dir() / "figure-runs" / budget
    captions: dict[str, str] = {}
    for group in (pruning_figures,):
        start = time.perf_counter()
        figures = group(model, budget, runs)
        log(f"{group.__name__}: runs took {time.perf_counter() - start:.0f} s")
        for name, (fig, caption) in figures.items():
            start = time.perf_counter()
            save_figure(fig, out_dir, name, png=png)
            captions[name] = caption
            log(f"  {name}: saved in {time.perf_counter() - start:.1f} s")
    lines = ["# Figures", "", f"Regenerated by `circuitcut.plots.make_figures(budget=\"{budget}\")` on the "
             "embedded model (SmolLM2-135M-Instruct); each PNG has an interactive HTML twin.", ""]
    lines += [f"- `{name}.png`: {caption}" for name, caption in captions.items()]
    (Path(out_dir) / "CAPTIONS.md").write_text("\n".join(lines) + "\n")
    return captions

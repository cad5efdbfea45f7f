"""Subnetwork results as tables: one run's, as text (:func:`format_report`) or a pandas DataFrame
(:func:`report_frame`) from the same rows (:func:`report_rows`); a markdown table of many runs and their seed
overlaps; the bootstrap interval of a dPPL over resampled facts (:func:`bootstrap_dppl`).

Every figure is whole-tail dPPL unless labelled ``1st`` (the first tail token's); "never seen" control
facts were used neither in training nor by the selection rule.
"""

from __future__ import annotations

import statistics
from dataclasses import replace
from itertools import combinations
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor

from circuitcut.evaluate import sparsity_text
from circuitcut.overlap import chance_jaccard
from circuitcut.subnetwork.goals import missed_goals

if TYPE_CHECKING:
    import pandas as pd

    # run.py builds its frame here: importing the result class at run time would be circular
    from circuitcut.subnetwork.run import SubnetworkResult


def report_rows(metrics: dict) -> list[dict]:
    """One row per evaluated dataset of a run's metrics: ``dataset``, ``n``; perplexity of the original and the
    remaining model; ``dppl`` (whole tail) of the learned mask and the random masks' mean and sd over seeds
    (``dppl_random_mean``, ``dppl_random_std``; NaN without random masks); ``dppl_first`` (the first tail
    token's, a KG dataset only); top-10 in percent of the original, the remaining model and the random masks
    (mean over seeds)."""
    nan = {"mean": float("nan"), "std": float("nan")}
    seeds = metrics["random"]["per_seed"]
    rows = []
    for name, before in metrics["original"].items():
        after, change = metrics["remaining"][name], metrics["change"][name]
        rand = metrics["random"]["change"].get(name, {}).get("dppl", nan)
        rows.append({
            "dataset": name, "n": before["n"], "ppl_original": before["ppl"], "ppl_remaining": after["ppl"],
            "dppl": change["dppl"], "dppl_random_mean": rand["mean"], "dppl_random_std": rand["std"],
            **({"dppl_first": change["dppl_first"]} if "dppl_first" in change else {}),
            "top10_original": before["top10"], "top10_remaining": after["top10"],
            "top10_random": statistics.fmean(r[name]["top10"] for r in seeds) if seeds else float("nan"),
        })
    return rows


def report_frame(metrics: dict) -> pd.DataFrame:
    """:func:`report_rows` as a pandas DataFrame: :func:`format_report`'s table, one row per dataset."""
    import pandas as pd  # here, so that importing circuitcut does not import pandas

    return pd.DataFrame(report_rows(metrics))


def format_report(metrics: dict) -> str:
    """A plain-text table of a run's metrics: per dataset, the remaining model against the random masks.

    dPPL is over the whole tail; ``dPPL 1st`` is the first tail token's (secondary); top-10 in percent.
    """
    lines = [
        f"target {metrics.get('target', '?')} on {metrics['model']}: sparsity {sparsity_text(metrics['sparsity'])} % "
        f"({metrics['size']['n_subnetwork']:,} of {metrics['size']['n_units']:,} {metrics['size']['granularity']} units in the subnetwork)",
        f"{'dataset':22s} {'n':>5s} {'PPL orig':>9s} {'PPL rem':>10s} {'dPPL %':>10s} {'random dPPL %':>20s} "
        f"{'dPPL 1st %':>10s} {'top10 orig':>10s} {'top10 rem':>9s} {'top10 rand':>10s}",
    ]
    for r in report_rows(metrics):
        lines.append(
            f"{r['dataset']:22s} {r['n']:5d} {r['ppl_original']:9.2f} {r['ppl_remaining']:10.2f} {r['dppl']:+10.1f} "
            f"{r['dppl_random_mean']:+11.1f} ± {r['dppl_random_std']:6.1f} {r.get('dppl_first', float('nan')):+10.1f} "
            f"{r['top10_original']:10.1f} {r['top10_remaining']:9.1f} {r['top10_random']:10.1f}"
        )
    sel = metrics.get("selection")
    if sel and sel["validated"]:
        stopped = f"; training stopped early after step {sel['steps_run']}" if sel.get("stopped_early") else ""
        lines.append(f"mask chosen at step {sel['chosen_step']} by the validation rule "
                     f"({'met' if sel['rule_met'] else 'not met: the least violation'}){stopped}")
    return "\n".join(lines)


def _dppl(metrics: dict, name: str) -> str:
    change = metrics["change"].get(name)
    rand = metrics["random"]["change"].get(name, {}).get("dppl")
    if change is None:
        return "-"
    text = f"{change['dppl']:+.1f}"
    return f"{text} ({rand['mean']:+.1f} ± {rand['std']:.1f})" if rand else text


def _top10(metrics: dict, name: str) -> str:
    if name not in metrics["original"]:
        return "-"
    return f"{metrics['original'][name]['top10']:.0f} → {metrics['remaining'][name]['top10']:.0f}"


def results_table(results: dict[str, SubnetworkResult]) -> str:
    """A markdown table, one row per run: sparsity, target top-10, each dataset's dPPL (random masks of the
    same size in brackets: mean ± sd over seeds), the selection rule's choice, the goals missed and the
    run's time."""
    head = ("| run | units | sparsity % | target top-10 % | paraphrased top-10 % | TargetKG dPPL % | TargetKG 1st-token dPPL % "
            "| paraphrased dPPL % | ControlKG trained dPPL % | ControlKG never seen dPPL % | never seen, paraphrased % "
            "| ControlLM dPPL % | chosen step | goals missed | minutes |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for label, r in results.items():
        m, c = r.metrics, r.config
        sel = m.get("selection", {})
        minutes = sum(m.get("seconds", {}).get(k, 0) for k in ("data", "train", "evaluate")) / 60
        lines.append(
            f"| {label} | {c.units} "
            f"| {sparsity_text(m['sparsity'])} | {_top10(m, 'target')} | {_top10(m, 'target_paraphrase')} | {_dppl(m, 'target')} "
            f"| {m['change']['target'].get('dppl_first', float('nan')):+.1f} | {_dppl(m, 'target_paraphrase')} "
            f"| {_dppl(m, 'control')} | {_dppl(m, 'control_new')} | {_dppl(m, 'control_new_paraphrase')} "
            f"| {_dppl(m, 'lm')} | {sel.get('chosen_step')}{'' if sel.get('rule_met') else ' (rule not met)'} "
            f"| {', '.join(missed_goals(m)) or 'none'} | {minutes:.0f} |")
    return "\n".join(lines)


def seed_overlaps(results: dict[str, SubnetworkResult]) -> str:
    """Markdown lines, one per pair of runs whose configs differ only in the mask seed (``data_seed`` fixed, so
    the same facts): their Jaccard overlap beside that of random sets of the same sizes, i.e. how much of a
    mask is seed noise."""
    lines = []
    for (label_a, a), (label_b, b) in combinations(results.items(), 2):
        if a.config.seed != b.config.seed and replace(a.config, seed=b.config.seed) == b.config:
            n_a, n_b, n = a.mask.n_removed(), b.mask.n_removed(), a.mask.n_units()
            lines.append(f"- {label_a} vs {label_b} ({a.config.units}, {n_a:,} and {n_b:,}): Jaccard "
                         f"{a.mask.jaccard(b.mask)['overall']:.3f} (random sets of the same sizes "
                         f"{chance_jaccard(n_a, n_b, n):.2g})")
    return "\n".join(lines)


def bootstrap_dppl(increase: Float[Tensor, " fact"], n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % interval of a dPPL (percent) over ``n`` resamples of the facts, from each fact's increase of its
    whole-tail NLL (nats): how far a figure over 100 facts can move with another sample of facts (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randint(len(increase), (n, len(increase)), generator=gen)
    dppl = 100 * (increase[rows].mean(-1).exp() - 1)
    low, high = torch.quantile(dppl, torch.tensor([0.025, 0.975]))
    return float(low), float(high)

"""One iterative-pruning step vs the forward passes it needs, and the paper-sized protocol's time.

    python benchmarks/bench_pruning_step.py [--tokens 512] [--rounds 2] [--batch-size 8]

On the embedded SmolLM2 (forget = python, retain = prose, 128-token windows, ``tokens`` per split),
timed interleaved in one process:

* ``prune_default``: ``prune(steps=1, baseline=False)``: evaluation of the original model (both
  evaluation splits), statistics on both statistics splits, one step, evaluation again;
* ``prune_stats_on_eval``: the same with ``stats_on_eval=True`` (statistics taken in the
  evaluation passes: no statistics passes at all);
* ``fwd_eval`` / ``fwd_stats``: plain forward passes (inference mode) over both evaluation / both
  statistics splits: the passes a step strictly needs;
* ``collect``, ``evaluate``, ``evaluate_with_stats``: the step's parts, for the extrapolation.

The paper's protocol (Pochinkov & Schoots): 50 steps, each with statistics on 100k tokens and
evaluation on 100k tokens per dataset (forget and retain), extrapolated from the per-token times.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _common import emit, interleaved, machine, ratio, summary

import circuitcut
from circuitcut.evaluate import evaluate_tokens
from circuitcut.pruning import PruningConfig, PruningData, prune
from circuitcut.sites import ModelShape
from circuitcut.stats import NeuronStats, collect_stats, stats_hooks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=512, help="tokens per split (4 splits)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--sites", default="mlp")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = circuitcut.load_model("smollm2", device="cpu")
    base = dict(forget="python", retain="prose", sites=tuple(args.sites.split(",")), steps=1, tokens=args.tokens,
                window=128, baseline=False, batch_size=args.batch_size)
    config = PruningConfig(**base)
    config_soe = PruningConfig(**base, stats_on_eval=True)
    data = PruningData.from_config(model.tokenizer, config)  # tokenized once, shared by every run
    shape = ModelShape.of(model)
    bs = args.batch_size

    def forward(*sets):
        with torch.inference_mode():
            for tokens in sets:
                for b in torch.split(tokens, bs):
                    model(b)

    def collect():
        return [collect_stats(model, t, config.sites, batch_size=bs) for t in (data.forget_stats, data.retain_stats)]

    def evaluate():
        return [evaluate_tokens(model, t, batch_size=bs) for t in (data.forget_eval, data.retain_eval)]

    def evaluate_with_stats():
        out = []
        for t in (data.forget_eval, data.retain_eval):
            s = NeuronStats.empty(shape, config.sites)
            out.append(evaluate_tokens(model, t, batch_size=bs, stat_hooks=stats_hooks(s)))
        return out

    fns = {
        "prune_default": lambda: prune(model, config, data=data, progress=False),
        "prune_stats_on_eval": lambda: prune(model, config_soe, data=data, progress=False),
        "fwd_eval": lambda: forward(data.forget_eval, data.retain_eval),
        "fwd_stats": lambda: forward(data.forget_stats, data.retain_stats),
        "collect": collect,
        "evaluate": evaluate,
        "evaluate_with_stats": evaluate_with_stats,
    }
    forward(data.forget_eval[:bs])  # warm-up
    wall, cpu = interleaved(fns, args.rounds, warmup=False)

    def per_round(expr):
        return statistics.median(expr(i) for i in range(args.rounds))

    def ratios_of(t):
        needed_default = lambda i: 2 * t["fwd_eval"][i] + t["fwd_stats"][i]  # noqa: E731
        return {
            "prune_run_vs_needed_forwards": round(per_round(lambda i: t["prune_default"][i] / needed_default(i)), 3),
            "step_vs_needed_forwards": round(per_round(
                lambda i: (t["collect"][i] + t["evaluate"][i]) / (t["fwd_stats"][i] + t["fwd_eval"][i])), 3),
            "statistics_vs_plain_forward": round(ratio(t, "collect", "fwd_stats"), 3),
            "evaluation_vs_plain_forward": round(ratio(t, "evaluate", "fwd_eval"), 3),
            "stats_on_eval_run_vs_needed_forwards": round(per_round(
                lambda i: t["prune_stats_on_eval"][i] / (2 * t["fwd_eval"][i])), 3),
            "stats_on_eval_step_vs_default_step": round(per_round(
                lambda i: t["evaluate_with_stats"][i] / (t["collect"][i] + t["evaluate"][i])), 3),
        }

    ratios = {"cpu_time": ratios_of(cpu), "wall_time": ratios_of(wall)}
    split_tokens = data.forget_stats.numel() + data.retain_stats.numel()
    eval_tokens = data.forget_eval.numel() + data.retain_eval.numel()
    steps, per_dataset = 50, 100_000

    def extrapolate(t, clock):
        stats_per_token = statistics.median(t["collect"]) / split_tokens
        eval_per_token = statistics.median(t["evaluate"]) / eval_tokens
        eval_stats_per_token = statistics.median(t["evaluate_with_stats"]) / eval_tokens
        step_s = 2 * per_dataset * (stats_per_token + eval_per_token)
        original_s = 2 * per_dataset * eval_per_token
        return {
            "clock": clock,
            "tokens_per_s": {"statistics": round(1 / stats_per_token, 1), "evaluation": round(1 / eval_per_token, 1),
                             "evaluation_with_statistics": round(1 / eval_stats_per_token, 1)},
            "seconds_per_step": round(step_s, 1),
            "selective_hours": round((original_s + steps * step_s) / 3600, 2),
            "selective_plus_random_baseline_hours": round((original_s + steps * step_s + steps * original_s) / 3600, 2),
            "selective_hours_with_stats_on_eval": round((steps + 1) * 2 * per_dataset * eval_stats_per_token / 3600, 2),
        }

    protocol = {
        "protocol": "50 steps x (100k statistics + 100k evaluation tokens) per dataset, 2 datasets",
        "wall": extrapolate(wall, "median wall-clock per-token times of this run (shared, loaded machine)"),
        "cpu": extrapolate(cpu, "median CPU per-token times of this run (about a dedicated core at this thread count)"),
    }
    emit({
        "benchmark": "one iterative-pruning step",
        "machine": machine(),
        "model": "smollm2 (SmolLM2-135M-Instruct, float32)",
        "sites": list(config.sites),
        "tokens_per_split": args.tokens,
        "batch_size": bs,
        "rounds": args.rounds,
        "ratios": ratios,
        "paper_protocol_extrapolation": protocol,
        "wall_times": summary(wall),
        "cpu_times": summary(cpu),
    })


if __name__ == "__main__":
    main()

"""Statistics collection throughput vs a plain forward pass, vs the naive run_with_cache way, vs raw HF.

    python benchmarks/bench_stats.py [--windows 8] [--batch-size 8] [--rounds 3] [--kinds mlp]

Timed interleaved in one process on the embedded SmolLM2 (prose windows of 128 tokens):

* ``forward``: the bridge's plain forward pass (logits), under inference mode;
* ``stats``: :func:`circuitcut.collect_stats` as shipped (stops after the last hooked site);
* ``stats_full_forward``: the same hooks with the whole forward run (``stop_early=False``): the
  pure hook overhead;
* ``naive``: ``run_with_cache`` on the hooked names, then float64 statistics from the cache
  (``--naive-all``: also ``naive_cache_all``, caching every hook point, the usual first attempt);
* ``hf_forward`` / ``hf_stats``: a plain Hugging Face copy of the same checkpoint (not wrapped by
  the bridge; SDPA attention) and the same statistics from PyTorch forward-pre-hooks on its
  ``down_proj`` (the tensor the bridge calls ``blocks.L.mlp.hook_post``), to show what the
  bridge's wrapping costs and how statistics could run at Hugging Face speed.
"""

from __future__ import annotations

import argparse

import torch
from _common import emit, interleaved, machine, prose_windows, ratio, summary
from transformers import AutoModelForCausalLM

import circuitcut
from circuitcut.models import embedded_checkpoint
from circuitcut.sites import ModelShape, hook_name
from circuitcut.forward import stream
from circuitcut.stats import NeuronStats, StatsHook, collect_stats, stats_hooks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kinds", default="mlp")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-hf", action="store_true", help="skip the raw Hugging Face comparison")
    parser.add_argument("--naive-all", action="store_true", help="also time run_with_cache of every hook point")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    kinds = args.kinds.split(",")

    model = circuitcut.load_model("smollm2", device="cpu")
    shape = ModelShape.of(model)
    tokens = prose_windows(model.tokenizer, args.windows)
    batches = torch.split(tokens, args.batch_size)
    names = [hook_name(k, layer) for k in kinds for layer in range(shape.n_layers)]

    def forward():
        with torch.inference_mode():
            for b in batches:
                model(b)

    def stats():
        return collect_stats(model, tokens, kinds, batch_size=args.batch_size)

    def stats_full_forward():
        s = NeuronStats.empty(shape, kinds)
        stream(model, tokens, stat_hooks=stats_hooks(s), batch_size=args.batch_size, stop_early=False)
        return s

    def naive():
        sums = {n: None for n in names}
        with torch.inference_mode():
            for b in batches:
                _, cache = model.run_with_cache(b, names_filter=lambda n: n in names)
                for n in names:
                    x = cache[n].flatten(0, 1).flatten(1).double()
                    s = torch.stack(((x > 0).sum(0).double(), x.sum(0), x.abs().sum(0), (x * x).sum(0)))
                    sums[n] = s if sums[n] is None else sums[n] + s
        return sums

    def naive_cache_all():
        """The most common naive way: cache every hook point, then read the ones needed."""
        sums = {n: None for n in names}
        with torch.inference_mode():
            for b in batches:
                _, cache = model.run_with_cache(b)
                for n in names:
                    x = cache[n].flatten(0, 1).flatten(1).double()
                    s = torch.stack(((x > 0).sum(0).double(), x.sum(0), x.abs().sum(0), (x * x).sum(0)))
                    sums[n] = s if sums[n] is None else sums[n] + s
                del cache
        return sums

    fns = {"forward": forward, "stats": stats, "stats_full_forward": stats_full_forward, "naive": naive}
    if args.naive_all:
        fns["naive_cache_all"] = naive_cache_all

    check = {}
    if not args.no_hf and kinds == ["mlp"]:
        hf = AutoModelForCausalLM.from_pretrained(embedded_checkpoint("smollm2"), dtype=torch.float32).eval()

        def hf_forward():
            with torch.inference_mode():
                for b in batches:
                    hf(b)

        def hf_stats():
            s = NeuronStats.empty(shape, ["mlp"])
            hooks = [StatsHook(s.sums["mlp"], layer) for layer in range(shape.n_layers)]
            handles = [hf.model.layers[layer].mlp.down_proj.register_forward_pre_hook(
                lambda module, inputs, h=h: h(inputs[0])) for layer, h in enumerate(hooks)]
            try:
                with torch.inference_mode():
                    for b in batches:
                        hf.model(b)  # the decoder stack only: no unembedding for statistics
            finally:
                for handle in handles:
                    handle.remove()
            for h in hooks:
                h.flush()
            s.count = tokens.numel()
            return s

        fns.update(hf_forward=hf_forward, hf_stats=hf_stats)
        a, b = stats().importance("rms")["mlp"], hf_stats().importance("rms")["mlp"]
        check["hf_stats_vs_bridge_stats_max_rel_diff"] = float(((a - b).abs() / a.abs().clamp_min(1e-6)).max())

    wall, cpu = interleaved(fns, args.rounds)
    n = tokens.numel()

    def ratios_of(times):
        out = {
            "stats_throughput_vs_forward": round(ratio(times, "forward", "stats"), 3),
            "hook_overhead_with_full_forward": round(ratio(times, "stats_full_forward", "forward") - 1, 3),
            "speedup_vs_naive_run_with_cache": round(ratio(times, "naive", "stats"), 3),
        }
        if "naive_cache_all" in times:
            out["speedup_vs_naive_run_with_cache_all_hooks"] = round(ratio(times, "naive_cache_all", "stats"), 3)
        if "hf_forward" in times:
            out.update(
                bridge_forward_time_vs_raw_hf=round(ratio(times, "forward", "hf_forward"), 3),
                hf_hook_stats_throughput_vs_bridge_forward=round(ratio(times, "forward", "hf_stats"), 3),
                hf_hook_stats_speedup_vs_bridge_stats=round(ratio(times, "stats", "hf_stats"), 3),
            )
        return out

    ratios = {"target": "stats_throughput_vs_forward >= 0.9", "cpu_time": ratios_of(cpu), "wall_time": ratios_of(wall)}
    emit({
        "benchmark": "statistics throughput",
        "machine": machine(),
        "model": "smollm2 (SmolLM2-135M-Instruct, float32)",
        "kinds": kinds,
        "tokens_per_call": n,
        "windows": list(tokens.shape),
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "ratios": ratios,
        "checks": check,
        "wall_times": summary(wall, n),
        "cpu_times": summary(cpu, n),
    })


if __name__ == "__main__":
    main()

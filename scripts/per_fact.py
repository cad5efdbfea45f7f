"""What a subnetwork leaves, fact by fact: which target rows keep their tail, which control facts it damages.

For each finished run folder:

* TargetKG on its training and paraphrased templates: the rows whose tail the remaining model still ranks in
  its top 10, and how many of them are facts whose tail their own head names (``A green frog is a type of|
  frog``: answered by copying part of the prompt, not by recalling a fact; ``Triplet.tail_named_in_head``);
* ControlKG, trained on and never seen: the mean increase of the whole-tail NLL (nats; its exp gives the
  report's dPPL, here with a bootstrap interval over the facts), the share of it carried by the ``--top``
  most damaged facts, by facts whose tail shares a word with a TargetKG tail ("bird family" beside the
  target tail "bird") and by facts whose tail their head names, and the most damaged facts themselves.

    python scripts/per_fact.py RUN_DIR [RUN_DIR ...] [--top 10] [--threads N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from circuitcut.data.kg import KGBatch, Triplet, score_pairs
from circuitcut.models import load_model
from circuitcut.subnetwork import SubnetworkResult, run_data
from circuitcut.subnetwork.report import bootstrap_dppl
from circuitcut.threads import set_threads


def _words(texts: list[str]) -> list[set[str]]:
    return [set(t.lower().split()) for t in texts]


def _named(batch: KGBatch) -> torch.Tensor:
    # The prompt stands in for the head: its template words ("is a kind of") name no tail.
    return torch.tensor([Triplet(p, "IsA", c).tail_named_in_head for p, c in zip(batch.prompts, batch.continuations)])


def target_report(name: str, batch: KGBatch, rank: torch.Tensor) -> str:
    """One target dataset's lines: the rows still in the top 10, and how many of them have a named tail."""
    named, left = _named(batch), (rank <= 10).nonzero().flatten().tolist()
    lines = [f"  {name}: {len(left)} of {len(batch)} rows keep the tail in the top 10, {int(named[left].sum())} of "
             f"them named in the head (of all rows: {int(named.sum())})"]
    lines += [f"    rank {int(rank[i])}  {batch.prompts[i]}|{batch.continuations[i]}{'  (named)' if named[i] else ''}"
              for i in left]
    return "\n".join(lines)


def damage_report(name: str, batch: KGBatch, increase: torch.Tensor, target_words: set[str], top: int) -> str:
    """One dataset's lines: totals and shares of the per-fact NLL increase, then the ``top`` worst facts."""
    total = increase.sum().item()
    order = increase.argsort(descending=True)
    tails = _words(batch.continuations)
    near = torch.tensor([bool(w & target_words) for w in tails])
    named = _named(batch)
    low, high = bootstrap_dppl(increase)
    lines = [
        f"  {name}: {len(batch)} facts, mean NLL increase {increase.mean():.3f} nats "
        f"(dPPL {100 * (increase.mean().exp() - 1):+.1f} %, 95 % over resampled facts {low:+.1f} to {high:+.1f}); the {top} worst carry "
        f"{increase[order[:top]].sum() / total:.0%}; {int(near.sum())} facts whose tail shares a word with "
        f"a target tail carry {increase[near].sum() / total:.0%}; {int(named.sum())} whose tail their head names "
        f"carry {increase[named].sum() / total:.0%}"
    ]
    for i in order[:top].tolist():
        flag = ("  (shares a target tail word)" if near[i] else "") + ("  (tail named in the head)" if named[i] else "")
        lines.append(f"    {increase[i]:+.2f}  {batch.prompts[i]}|{batch.continuations[i]}{flag}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", help="finished `circuitcut subnet` run folders")
    parser.add_argument("--top", type=int, default=10, help="most damaged facts listed per dataset")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the cores left free)")
    args = parser.parse_args()
    set_threads(args.threads)
    model = load_model("smollm2")
    for run_dir in args.run_dirs:
        result = SubnetworkResult.load(run_dir, model)
        data = run_data(model, result.config, Path(run_dir))
        target_words = set().union(*_words(data.eval_kg["target"].continuations))
        print(f"{run_dir} ({result.config.target}, {result.mask.n_removed():,} {result.config.units}):")
        for name in ("target", "target_paraphrase"):
            batch = data.eval_kg[name]
            with result.mask.remaining(model):
                print(target_report(name, batch, score_pairs(model, batch).rank))
        for name in ("control", "control_new"):
            batch = data.eval_kg[name]
            original = score_pairs(model, batch).tail_logprob
            with result.mask.remaining(model):
                remaining = score_pairs(model, batch).tail_logprob
            print(damage_report(name, batch, original - remaining, target_words, args.top))


if __name__ == "__main__":
    main()

"""Which control facts a subnetwork damages: spread over all of them, or a few near the target?

For each finished run folder, on the trained and the never-seen ControlKG facts: the mean increase of
the whole-tail NLL (nats; its exp gives the report's dPPL), the share of that increase carried by the
``--top`` most damaged facts, by facts whose tail shares a word with a TargetKG tail ("bird family" beside
the target tail "bird"), and by facts whose tail their own head names ("A dressing table is a kind of table":
answered by copying a name, not by recalling a fact; ``Triplet.tail_named_in_head``), and the most damaged
facts themselves:

    python scripts/control_damage.py RUN_DIR [RUN_DIR ...] [--top 10] [--threads N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from circuitcut.data.kg import KGBatch, Triplet, score_pairs
from circuitcut.models import load_model
from circuitcut.subnetwork import SubnetworkResult, run_data
from circuitcut.threads import set_threads


def _words(texts: list[str]) -> list[set[str]]:
    return [set(t.lower().split()) for t in texts]


def damage_report(name: str, batch: KGBatch, increase: torch.Tensor, target_words: set[str], top: int) -> str:
    """One dataset's lines: totals and shares of the per-fact NLL increase, then the ``top`` worst facts."""
    total = increase.sum().item()
    order = increase.argsort(descending=True)
    tails = _words(batch.continuations)
    near = torch.tensor([bool(w & target_words) for w in tails])
    # The prompt stands in for the head: its template words ("is a kind of") name no tail.
    named = torch.tensor([Triplet(p, "IsA", c).tail_named_in_head for p, c in zip(batch.prompts, batch.continuations)])
    lines = [
        f"  {name}: {len(batch)} facts, mean NLL increase {increase.mean():.3f} nats "
        f"(dPPL {100 * (increase.mean().exp() - 1):+.1f} %); the {top} worst carry "
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
        print(f"{run_dir} ({result.config.target}, {result.mask.n_subnetwork():,} {result.config.units}):")
        for name in ("control", "control_new"):
            batch = data.eval_kg[name]
            original = score_pairs(model, batch).tail_logprob
            with result.mask.remaining(model):
                remaining = score_pairs(model, batch).tail_logprob
            print(damage_report(name, batch, original - remaining, target_words, args.top))


if __name__ == "__main__":
    main()

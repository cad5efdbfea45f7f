"""Scoring fact rows with the unembedding at their tail positions only, against every position's logits.

    python benchmarks/bench_fact_scoring.py [--target isa:animal] [--rounds 3] [--threads 1] [--out DIR]

Timed interleaved in one process on the embedded SmolLM2, over a subnetwork run's evaluation fact sets (the
preset ``weights`` data of ``--target``; ``--out`` keeps its scored facts for the next time), behind the run's
frozen prefix as a run evaluates them:

* ``tail``: :func:`circuitcut.data.kg.score_pairs` as shipped (:func:`~circuitcut.data.kg.tail_logits`);
* ``every_position``: the same sub-batches scored from the logits of every position, as before.

Both must give the same ranks and log-probabilities; the ratio is tail / every position.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from _common import emit, interleaved, machine, ratio, summary

import circuitcut
from circuitcut.data.kg import KGBatch, score_pairs
from circuitcut.sites import ModelShape
from circuitcut.subnetwork import preset
from circuitcut.subnetwork.prefix import FrozenPrefix
from circuitcut.subnetwork.run import run_data


@torch.inference_mode()
def every_position(model, batch: KGBatch, batch_size: int = 64) -> torch.Tensor:
    """The ranks ``score_pairs`` gives, from every position's logits (the path it replaced)."""
    order = sorted(range(len(batch)), key=lambda i: int(batch.attention_mask[i].sum()))
    rank = torch.zeros(len(batch), dtype=torch.long)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        sub = batch[rows]
        rank[torch.tensor(rows)] = sub.score(model(sub.tokens[:, :-1])).rank
    return rank


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="isa:animal")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="folder for the scored facts (default: temporary)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = circuitcut.load_model("smollm2", device="cpu")
    config = preset("weights", target=args.target)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-facts-"))
    out.mkdir(parents=True, exist_ok=True)
    data = run_data(model, config, out)
    first = min(config.resolved_layers(ModelShape.of(model)))
    prefix = FrozenPrefix.of(model, first, data.sequences())
    sets = [batch for batch in data.eval_kg.values() if len(batch)]
    with prefix.active():
        for batch in sets:
            assert torch.equal(score_pairs(model, batch).rank, every_position(model, batch))
        wall, cpu = interleaved({"tail": lambda: [score_pairs(model, b) for b in sets],
                                 "every_position": lambda: [every_position(model, b) for b in sets]}, args.rounds)
    emit({"machine": machine(), "target": args.target, "rows": sum(len(b) for b in sets),
          "ratio_wall": round(ratio(wall, "tail", "every_position"), 3),
          "ratio_cpu": round(ratio(cpu, "tail", "every_position"), 3),
          "wall": summary(wall), "cpu": summary(cpu)})


if __name__ == "__main__":
    main()

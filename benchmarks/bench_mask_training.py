"""One mask-training step vs a plain forward+backward of the model on the same batches.

    python benchmarks/bench_mask_training.py [--rounds 3]

The step is the subnetwork trainer's own (``SubnetworkTrainer._train_step``) with its default
config (neuron masks on ``mlp.hook_post`` of the top half of the layers,
Gumbel-sigmoid straight-through, three loss terms each with its own forward+backward: TargetKG
prompts, a ControlKG batch, ControlLM windows; Adam on the scores). To time the step alone, the
facts are synthetic (prose tokens cut into 12-token prompts, the sizes of the defaults: 20 target
facts, ``control_batch`` control facts, ``lm_batch`` windows of 128) and the reference predictions
are computed once up front, as the trainer does.

Baselines, on the same three batches, without masks:

* ``plain_fwd_bwd``: forward + backward with the model's weights trainable (a training step's cost);
* ``frozen_fwd_bwd``: forward + backward to the input embeddings only, weights frozen (the least
  backward work any mask training must do).
"""

from __future__ import annotations

import argparse

import torch
from _common import emit, interleaved, machine, prose_windows, ratio, summary

import circuitcut
from circuitcut.data.kg import KGBatch, collate
from circuitcut.sites import ModelShape
from circuitcut.subnetwork import SubnetworkConfig, SubnetworkData, SubnetworkTrainer
from circuitcut.subnetwork.mask import remover
from circuitcut.subnetwork.objective import reference


def _facts(windows: torch.Tensor, n: int, seed: int) -> KGBatch:
    """``n`` prompts of 6-10 prose tokens, each followed by its next token as the tail."""
    g = torch.Generator().manual_seed(seed)
    flat = windows.flatten()
    flat = flat[: flat.numel() // 12 * 12].reshape(-1, 12)
    rows = flat[torch.randperm(len(flat), generator=g)[:n]]
    cuts = torch.randint(6, 11, (n,), generator=g).tolist()
    return collate([(row[:c].tolist(), row[c : c + 1].tolist()) for row, c in zip(rows, cuts)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = circuitcut.load_model("smollm2", device="cpu")
    config = SubnetworkConfig()
    windows = prose_windows(model.tokenizer, 8 + config.lm_batch)
    data = SubnetworkData(
        target=_facts(windows[:4], 20, 0),
        control=_facts(windows[4:8], config.control_batch, 1),  # one batch: the step takes all of it
        lm=windows[8:],  # lm_batch windows: the step takes all of them
    )
    ref = reference(model, data.control, data.lm, top_k=config.lm_top_k)
    trainer = SubnetworkTrainer(model, config, data)
    params = list(model.parameters())
    batches = [data.target.tokens, data.control.tokens, data.lm]

    def mask_step():
        for p in params:
            p.requires_grad_(False)
        keep = {name: torch.ones_like(s) for name, s in trainer.scores.items()}
        with remover(model, "neuron", keep) as masker:
            trainer._train_step(0, ref, masker)

    def plain_fwd_bwd():
        for p in params:
            p.requires_grad_(True)
        for tokens in batches:
            model(tokens).float().logsumexp(-1).mean().backward()
        for p in params:
            p.grad = None
            p.requires_grad_(False)

    def frozen_fwd_bwd():
        for p in params:
            p.requires_grad_(False)
        leaf = lambda x, hook: x.detach().requires_grad_()  # noqa: E731
        with model.hooks(fwd_hooks=[("hook_embed", leaf)]):
            for tokens in batches:
                model(tokens).float().logsumexp(-1).mean().backward()

    wall, cpu = interleaved({"mask_step": mask_step, "plain_fwd_bwd": plain_fwd_bwd, "frozen_fwd_bwd": frozen_fwd_bwd},
                        args.rounds)
    n_tokens = sum(b.numel() for b in batches)
    emit({
        "benchmark": "mask-training step",
        "machine": machine(),
        "model": "smollm2 (SmolLM2-135M-Instruct, float32)",
        "mask": f"neuron, kinds {list(config.neuron_kinds)}, layers {list(config.resolved_layers(ModelShape.of(model)))}",
        "mask_units": trainer.scores.n_units(),
        "batches": {"target": list(data.target.tokens.shape), "control": list(data.control.tokens.shape),
                    "lm": list(data.lm.shape)},
        "rounds": args.rounds,
        "ratios": {
            "target": "mask_step_vs_plain_fwd_bwd <= 1.5",
            **{kind: {"mask_step_vs_plain_fwd_bwd": round(ratio(t, "mask_step", "plain_fwd_bwd"), 3),
                      "mask_step_vs_frozen_fwd_bwd": round(ratio(t, "mask_step", "frozen_fwd_bwd"), 3)}
               for kind, t in (("cpu_time", cpu), ("wall_time", wall))},
        },
        "wall_times": summary(wall, n_tokens),
        "cpu_times": summary(cpu, n_tokens),
    })


if __name__ == "__main__":
    main()

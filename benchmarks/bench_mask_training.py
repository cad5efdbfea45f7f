"""One mask-training step vs a plain forward+backward of the model on the same batches.

    python benchmarks/bench_mask_training.py [--rounds 3]

The step is the subnetwork trainer's own (``circuitcut.subnetwork.trainer._step``) with its default
config (neuron masks on ``mlp.hook_post`` and ``attn.hook_v`` of the top half of the layers,
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
from types import SimpleNamespace

import torch
from _common import emit, interleaved, machine, prose_windows, ratio, summary

import circuitcut
from circuitcut.sites import ModelShape
from circuitcut.subnetwork.mask import remover
from circuitcut.subnetwork.objective import reference
from circuitcut.subnetwork.parametrize import MaskScores
from circuitcut.subnetwork.trainer import SubnetworkConfig, _step


def _facts(windows: torch.Tensor, n: int, seed: int) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    flat = windows.flatten()
    flat = flat[: flat.numel() // 12 * 12].reshape(-1, 12)
    tokens = flat[torch.randperm(len(flat), generator=g)[:n]]
    return SimpleNamespace(tokens=tokens, predict_pos=torch.randint(6, 11, (n,), generator=g))


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
    data = SimpleNamespace(
        target=_facts(windows[:4], 20, 0),
        control=_facts(windows[4:8], config.control_batch, 1),  # one batch: the step takes all of it
        lm=windows[8:],  # lm_batch windows: the step takes all of them
    )
    ref = reference(model, data.control.tokens, data.control.predict_pos, data.lm, top_k=config.lm_top_k)
    scores = MaskScores(config.sites(model), config.init_p)
    optimizer = torch.optim.Adam(scores.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(0)
    params = list(model.parameters())
    batches = [data.target.tokens, data.control.tokens, data.lm]

    def mask_step():
        for p in params:
            p.requires_grad_(False)
        keep = {name: torch.ones_like(s) for name, s in scores.items()}
        with remover(model, "neuron", keep) as masker:
            _step(model, config, data, ref, scores, optimizer, generator, masker, 0)

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
        "mask_units": scores.n_units(),
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

"""Data-parallel runs equal single-process runs; dtype and early-stop behaviour of the forward loop."""

from __future__ import annotations

import math
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import circuitcut
from circuitcut import distributed
from circuitcut.evaluate import evaluate_tokens
from circuitcut.masks import Mask
from circuitcut.pruning import PruningConfig, PruningData, PruningResult, prune
from circuitcut.sites import ModelShape, hook_name
from circuitcut.forward import stream
from circuitcut.stats import NeuronStats, collect_stats, stats_hooks
from pruning_helpers import planted_data, windows

WORLD = 2
KINDS = ["mlp", "attn_v"]


def _data() -> dict:
    return {
        "tokens": windows(0, 1000, 10, n=7),  # 7 windows: shards of 4 and 3
        "mask": torch.rand(7, 16, generator=torch.Generator().manual_seed(11)) > 0.25,
        "pruning": planted_data(),
        "train": windows(0, 1000, 12, n=6),
    }


PRUNING = dict(forget="f", retain="r", sites=("mlp", "attn_v"), steps=2, frac=0.05, tokens=128, window=16)


def _mask_gradient(model, tokens: torch.Tensor) -> torch.Tensor:
    """One mask-training step's gradient on Gumbel-sigmoid straight-through neuron-mask scores.

    The loss is the mean next-token cross-entropy over this rank's tokens; the scores' gradients
    are averaged across ranks weighted by token count, which is the gradient of the mean over all.
    """
    from circuitcut.subnetwork.neuron_masks import NeuronRemover
    from circuitcut.subnetwork.parametrize import MaskScores

    name = hook_name("mlp", 1)
    scores = MaskScores({name: (model.cfg.d_mlp,)}, init_p=0.45)
    masks = scores.sample(generator=torch.Generator().manual_seed(3))  # same noise on every rank
    local = distributed.shard(tokens)
    for p in model.parameters():
        p.requires_grad_(False)
    with NeuronRemover(model, {name: 1 - masks[name]}):
        logits = model(local)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), local[:, 1:].flatten())
    loss.backward()
    distributed.all_reduce_grads(scores.parameters(), weight=local[:, 1:].numel())
    return scores.scores[0].grad.clone()


def _run_all(model, data: dict, run_dir: Path) -> dict:
    """What the test compares: statistics, metrics, a pruning run and a mask gradient."""
    parallel = distributed.is_distributed()
    stats = collect_stats(model, data["tokens"], KINDS, token_mask=data["mask"], batch_size=2, across_ranks=parallel)
    metrics = evaluate_tokens(model, data["tokens"], skip_common=5, batch_size=2, across_ranks=parallel)
    result = prune(model, PruningConfig(**PRUNING), data=data["pruning"], out_dir=run_dir, progress=False)
    return {
        "count": stats.count,
        "sums": {k: torch.stack(s.tensors()) for k, s in stats.sums.items()},
        "metrics": metrics.to_dict(),
        "masks": {m: mask.by_kind() for m, mask in result.masks.items()},
        "history": result.history,
        "grad": _mask_gradient(model, data["train"]),
        "trained": _trained_scores(model),
    }


def _trained_scores(model) -> list[torch.Tensor]:
    """Mask scores after two steps of the real subnetwork trainer (each rank trains on its shares)."""
    from subnetwork_helpers import tiny_config, tiny_data

    from circuitcut.subnetwork import SubnetworkTrainer

    trainer = SubnetworkTrainer(model, tiny_config(steps=2), tiny_data(model))
    trainer.train(progress=False)
    return [s.detach().clone() for s in trainer.scores.scores]


def _worker(rank: int, port: int, model_dir: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    device = distributed.setup("cpu")
    try:
        assert distributed.is_distributed() and distributed.rank() == rank
        model = circuitcut.load_model(model_dir, device=device)
        out = _run_all(model, _data(), Path(out_dir) / "run")
        torch.save(out, Path(out_dir) / f"rank{rank}.pt")
    finally:
        distributed.teardown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_history_close(a: list[dict], b: list[dict]) -> None:
    assert [(h["method"], h["step"], h["per_layer"]) for h in a] == [(h["method"], h["step"], h["per_layer"]) for h in b]
    for ha, hb in zip(a, b):
        for split in ("forget", "retain"):
            for key, value in ha[split].items():
                assert math.isclose(value, hb[split][key], rel_tol=1e-5, abs_tol=1e-6), (ha["step"], split, key)


def test_two_gloo_ranks_equal_one_process(tiny_model_dir, tmp_path):
    # fork: the children inherit the imported modules (importing circuitcut again costs ~6 s of CPU
    # each); they run torch single-threaded, so no OpenMP pool is used across the fork.
    ctx = mp.start_processes(_worker, args=(_free_port(), str(tiny_model_dir), str(tmp_path)), nprocs=WORLD,
                             join=False, start_method="fork")
    deadline = time.monotonic() + 300
    while not ctx.join(timeout=2):  # raises if a rank failed
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the two ranks did not finish within 300 s")
    single = _run_all(circuitcut.load_model(str(tiny_model_dir), device="cpu"), _data(), tmp_path / "single")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    for got in ranks:  # every rank holds the whole result
        assert got["count"] == single["count"] == int(_data()["mask"].sum())
        for kind in KINDS:
            torch.testing.assert_close(got["sums"][kind], single["sums"][kind], rtol=1e-6, atol=1e-6)
        for key, value in single["metrics"].items():
            assert math.isclose(got["metrics"][key], value, rel_tol=1e-5), key
        for method, removed in single["masks"].items():
            for kind in removed:
                assert torch.equal(got["masks"][method][kind], removed[kind]), (method, kind)
        _assert_history_close(got["history"], single["history"])
        torch.testing.assert_close(got["grad"], single["grad"], rtol=1e-4, atol=1e-7)
        for a, b in zip(got["trained"], single["trained"]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert single["grad"].abs().sum() > 0
    # Only rank 0 wrote the run folder, and it is the single-process run's.
    saved = PruningResult.load(tmp_path / "run")
    for method, removed in single["masks"].items():
        assert torch.equal(saved.masks[method].by_kind()["mlp"], removed["mlp"])
    _assert_history_close(saved.history, single["history"])


def test_helpers_are_no_ops_outside_a_process_group():
    assert not distributed.is_distributed() and distributed.is_main_process()
    assert distributed.rank() == 0 and distributed.world_size() == 1
    t = torch.arange(6.0).reshape(3, 2)
    assert distributed.shard(t) is t
    assert distributed.setup("cpu") == torch.device("cpu")  # no WORLD_SIZE: nothing to join


def test_bfloat16_model_keeps_float64_statistics(tiny_model, tiny_model_dir):
    tokens = windows(0, 1000, 5, n=4)
    ref = tiny_model
    half = circuitcut.load_model(str(tiny_model_dir), device="cpu", dtype=torch.bfloat16)
    assert next(half.parameters()).dtype == torch.bfloat16
    a, b = collect_stats(ref, tokens, KINDS), collect_stats(half, tokens, KINDS)
    for kind in KINDS:
        assert all(t.dtype == torch.float64 and t.device.type == "cpu" for t in b.sums[kind].tensors())
        torch.testing.assert_close(b.importance("rms")[kind], a.importance("rms")[kind], rtol=0.05, atol=0.01)
    m32, m16 = evaluate_tokens(ref, tokens), evaluate_tokens(half, tokens)
    assert math.isfinite(m16.loss) and abs(m16.loss - m32.loss) < 0.05
    config = PruningConfig(**{**PRUNING, "steps": 1})
    result = prune(half, config, data=_data()["pruning"], progress=False)
    assert int(result.masks["selective"].by_kind()["mlp"].sum()) == round(0.05 * 2 * half.cfg.d_mlp)


def test_early_stop_changes_nothing_but_the_work(tiny_model):
    tokens = windows(0, 1000, 6, n=4)
    mask = Mask.empty(ModelShape.of(tiny_model), ["mlp"])
    mask.removed[hook_name("mlp", 0)][:10] = True
    with torch.inference_mode():
        before = tiny_model(tokens)
    full = NeuronStats.empty(ModelShape.of(tiny_model), KINDS)
    stream(tiny_model, tokens, fwd_hooks=mask.hooks(tiny_model), stat_hooks=stats_hooks(full), stop_early=False)
    seen = []
    stream(tiny_model, tokens, fwd_hooks=[(hook_name("attn_v", 1), lambda x, hook: seen.append(1))],
           stat_hooks=[], batch_size=2)
    assert len(seen) == 2  # the recording hook still ran on every batch
    import circuitcut.forward as forward_module

    calls = []
    real = forward_module._stop_forward
    forward_module._stop_forward = lambda *a, **k: (calls.append(1), real(*a, **k))
    try:
        early = collect_stats(tiny_model, tokens, KINDS, fwd_hooks=mask.hooks(tiny_model))
    finally:
        forward_module._stop_forward = real
    assert calls, "statistics without a logits consumer should stop after the last hooked site"
    for kind in KINDS:
        for a, b in zip(full.sums[kind].tensors(), early.sums[kind].tensors()):
            torch.testing.assert_close(a, b)
    with torch.inference_mode():
        torch.testing.assert_close(tiny_model(tokens), before)  # no hook left behind


def test_statistics_from_evaluation_passes_equal_statistics_on_the_evaluation_split(tiny_model):
    data = _data()["pruning"]
    config = PruningConfig(**{**PRUNING, "steps": 2, "baseline": False})
    shared = prune(tiny_model, PruningConfig(**{**PRUNING, "steps": 2, "baseline": False, "stats_on_eval": True}),
                   data=data, progress=False)
    same_tokens = PruningData(data.forget_eval, data.retain_eval, data.forget_eval, data.retain_eval)
    separate = prune(tiny_model, config, data=same_tokens, progress=False)
    for kind in ("mlp", "attn_v"):
        assert torch.equal(shared.masks["selective"].by_kind()[kind], separate.masks["selective"].by_kind()[kind])
    _assert_history_close(shared.history, separate.history)

"""Relearning and family generalisation: removed units stay exactly zero through fine-tuning (hooks and
surgery, neuron and weight masks), the recovery metric, the refusals, and whole runs on the tiny model."""

from __future__ import annotations

import importlib
import json
import shutil

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import circuitcut
from circuitcut.cli import main
from circuitcut.data import kg
from circuitcut.data.kg import Triplet
from circuitcut.masks import Mask, MaskMismatchError
from circuitcut.plots import family_generalisation, relearn_curves
from circuitcut.pruning import PruningConfig, prune
from circuitcut.robustness import (
    Facts, FamilyConfig, OverlapError, build_task, RelearnConfig, RelearnResult, RelearnTask, Removal, Windows, eval_steps,
    open_run, probe_accuracy, relearn, steps_to_recover,
)
from circuitcut.sites import ModelShape, hook_name
from circuitcut.subnetwork import SubnetworkConfig, SubnetworkData, find_subnetwork
from circuitcut.weight_masks import weight_module


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _windows(seed: int, n: int = 8, pos: int = 16):
    return torch.randint(0, 2000, (n, pos), generator=torch.Generator().manual_seed(seed))


def _neuron_mask(model) -> Mask:
    mask = Mask.empty(ModelShape.of(model), ("mlp", "attn_v"))
    mask.removed[hook_name("mlp", 0)][:10] = True
    mask.removed[hook_name("mlp", 1)][50:60] = True
    mask.removed[hook_name("attn_v", 1)][3:9] = True
    return mask


def _finetune(model, removal: Removal, how: str, steps: int = 3, lr: float = 1e-2) -> None:
    """A few large AdamW steps inside the hold, so that anything not held would move."""
    data = Windows(_windows(0))
    with removal.held(model, how):
        opt = torch.optim.AdamW(model.parameters(), lr=lr)
        for step in range(steps):
            opt.zero_grad()
            data.loss(model, torch.arange(4) + step).backward()
            opt.step()


def _removed_activations(model, mask: Mask) -> list[torch.Tensor]:
    _, cache = model.run_with_cache(_windows(1, n=2), names_filter=lambda n: n in mask.removed)
    return [cache[name].flatten(2)[..., removed] for name, removed in mask.removed.items() if removed.any()]


def _changed(before: dict, model) -> bool:
    return any(not torch.equal(before[n], p) for n, p in model.named_parameters())


# --- removed units stay removed -------------------------------------------------------------------
@pytest.mark.parametrize("how", ["hooks", "surgery"])
def test_removed_neurons_stay_exactly_zero_through_finetuning(tiny_model, how):
    mask = _neuron_mask(tiny_model)
    before = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}
    removal = Removal("selective", mask)
    _finetune(tiny_model, removal, how)
    assert _changed(before, tiny_model)  # the rest did train
    with removal.held(tiny_model, "hooks") if how == "hooks" else torch.no_grad():
        acts = _removed_activations(tiny_model, mask)
        assert len(acts) == 3 and all(torch.count_nonzero(a) == 0 for a in acts)
    if how == "surgery":  # also the weights: the out column of each removed MLP neuron, the v rows
        out = weight_module(tiny_model, "blocks.0.mlp.out").weight
        v = weight_module(tiny_model, "blocks.1.attn.v").weight
        assert torch.count_nonzero(out[:, :10]) == 0 and torch.count_nonzero(v[3:9]) == 0


def _weight_mask(model) -> Mask:
    gen = torch.Generator().manual_seed(0)
    names = ["blocks.1.attn.v", "blocks.1.mlp.in"]
    sub = {n: torch.rand(weight_module(model, n).weight.shape, generator=gen) < 0.2 for n in names}
    return Mask(ModelShape.of(model), "weight", sub)


@pytest.mark.parametrize("how", ["hooks", "surgery"])
def test_removed_weights_of_a_weight_level_subnetwork_stay_zero(tiny_model, how):
    mask = _weight_mask(tiny_model)
    sub = mask.removed
    before = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}
    removal = Removal("learned", mask)
    _finetune(tiny_model, removal, how)
    assert _changed(before, tiny_model)
    with removal.held(tiny_model, "hooks") if how == "hooks" else torch.no_grad():
        for n, m in sub.items():
            assert torch.count_nonzero(weight_module(tiny_model, n).weight[m]) == 0


def test_surgery_without_the_hold_would_let_removed_weights_move(tiny_model):
    """Zeroed weights get gradient (unlike a removed neuron's, a saddle): the hold is what keeps them zero."""
    mask = _weight_mask(tiny_model)
    mask.remove_from(tiny_model)
    _finetune(tiny_model, Removal("original", None), "surgery")
    assert torch.count_nonzero(weight_module(tiny_model, "blocks.1.mlp.in").weight[mask.removed["blocks.1.mlp.in"]]) > 0


# --- the recovery metric --------------------------------------------------------------------------
def _curve(values, every=(0, 1, 2, 4, 8)):
    return [{"step": s, "tokens": 100 * s, "forget": {"top1": v}} for s, v in zip(every, values)]


def test_steps_to_half_recovery_on_a_synthetic_curve():
    # Original 40, removal leaves 10: lost 30, half-recovery at 25, first reached at step 4.
    r = steps_to_recover(_curve([10, 12, 20, 26, 39]), reference=40, metric="top1")
    assert (r["lost"], r["goal"], r["step"], r["tokens"], r["after"]) == (30, 25, 4, 400, 2)
    assert steps_to_recover(_curve([10, 12, 20, 26, 39]), 40, "top1", fraction=0.9)["step"] == 8
    never = steps_to_recover(_curve([10, 11, 12, 13, 14]), 40, "top1")
    assert never["step"] is None and "not recovered within 8 steps" in never["note"]
    nothing = steps_to_recover(_curve([41, 41, 42, 40, 41]), 40, "top1")
    assert nothing["step"] is None and "cost nothing" in nothing["note"]


def test_evaluation_steps_double_and_end_on_the_last():
    assert eval_steps(32) == [0, 1, 2, 4, 8, 16, 32]
    assert eval_steps(10) == [0, 1, 2, 4, 8, 10]


# --- run folders ----------------------------------------------------------------------------------
PRUNE = dict(forget="python", retain="prose", sites=("mlp",), steps=2, frac=0.1, tokens=256, window=32)
SMALL = dict(steps=2, batch_size=2, eval_tokens=64)


@pytest.fixture()
def prune_run(tiny_model, tmp_path):
    folder = tmp_path / "p"
    prune(tiny_model, PruningConfig(**PRUNE), out_dir=folder, progress=False)
    return folder


def test_relearn_a_pruning_run_saves_three_curves_restores_the_model_and_resumes(tiny_model, prune_run, monkeypatch):
    before = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}
    result = relearn(tiny_model, prune_run, RelearnConfig(**SMALL), progress=False)
    assert list(result.curves) == ["original", "selective", "random"]
    assert [p["step"] for p in result.curves["selective"]] == [0, 1, 2]
    assert result.curves["selective"][-1]["tokens"] == 2 * 2 * 32
    assert result.run["step"] in (1, 2) and result.run["removed"]["selective"] == result.run["removed"]["random"] > 0
    assert not _changed(before, tiny_model)
    # The removal shows at step 0: the selective curve starts where the run's mask puts it, not at the original.
    assert result.curves["selective"][0]["forget"] != result.curves["original"][0]["forget"]
    saved = json.loads((prune_run / "relearn.json").read_text())
    assert set(saved["recovery"]) == {"selective", "random"}
    assert len(saved["provenance"]) == 1 and "date" in saved["provenance"][0]  # three saves of one start
    # Started again with the same settings, nothing is fine-tuned; other settings are refused.
    module = importlib.import_module("circuitcut.robustness.relearn")  # the package re-exports a function of that name
    monkeypatch.setattr(module, "_curve", lambda *a: pytest.fail("a finished curve was fine-tuned again"))
    assert RelearnResult.load(prune_run).curves == relearn(tiny_model, prune_run, RelearnConfig(**SMALL), progress=False).curves
    with pytest.raises(ValueError, match="other settings \\(lr\\)"):
        relearn(tiny_model, prune_run, RelearnConfig(**SMALL, lr=1e-3), progress=False)
    fig = relearn_curves(result)
    assert {t.name for t in fig.data if t.name} >= {"original", "selective", "random"}


def test_an_unfinished_pruning_run_is_refused(prune_run):
    history = json.loads((prune_run / "history.json").read_text())
    (prune_run / "history.json").write_text(json.dumps(history[:-1]))  # as if stopped during random step 2
    with pytest.raises(RuntimeError, match="random at step 1 of 2.*--resume"):
        open_run(prune_run)


def test_a_run_of_another_model_is_refused(prune_run, tiny_model_dir, tmp_path):
    config = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64)
    config.architectures = ["LlamaForCausalLM"]
    LlamaForCausalLM(config).save_pretrained(tmp_path / "other")
    for tokenizer_file in tiny_model_dir.glob("*token*"):
        shutil.copy(tokenizer_file, tmp_path / "other")
    other = circuitcut.load_model(str(tmp_path / "other"), device="cpu")
    with pytest.raises(MaskMismatchError, match="Load the model"):
        relearn(other, prune_run, RelearnConfig(**SMALL), progress=False)


def test_a_finetuning_set_overlapping_an_evaluation_split_is_refused(tiny_model, prune_run):
    run = open_run(prune_run, tiny_model)
    task = build_task(tiny_model, run, RelearnConfig(**SMALL))
    task.check()  # the run's own held-out slice shares nothing with evaluation
    leaky = torch.cat([task.train.tokens[:3], task.forget.tokens[1:2]])
    with pytest.raises(OverlapError, match="1 of 4 fine-tuning windows share a 32-token span with the forget"):
        relearn(tiny_model, prune_run, RelearnConfig(**SMALL), task=RelearnTask(
            Windows(leaky), task.forget, task.retain, "top1"), progress=False)
    assert not (prune_run / "relearn.json").exists()  # refused before anything ran
    # A built fine-tuning set drops such windows itself (a snippet repeated in both splits is not a leak
    # of the run's making): only the leaky window goes.
    kept = Windows(leaky).disjoint_from(task.forget, task.retain)
    assert torch.equal(kept.tokens, task.train.tokens[:3])
    # Facts: the same subject under another wording counts as overlap.
    target = kg.encode(tiny_model.tokenizer, [Triplet("dog", "IsA", "animal")], template="isa_kind")
    train = kg.encode(tiny_model.tokenizer, [Triplet("cat", "IsA", "mammal"), Triplet("dog", "IsA", "canine")],
                      template="isa_article")
    with pytest.raises(OverlapError, match="1 fine-tuning fact.*'dog'"):
        Facts(train).check_disjoint(Facts(target), ("fine-tuning", "target"))


# --- subnetworks ----------------------------------------------------------------------------------
TARGET = [("dog", "animal"), ("cat", "animal"), ("horse", "animal"), ("cow", "animal")]
CONTROL = [("rose", "flower"), ("oak", "tree"), ("car", "vehicle"), ("apple", "fruit")]


@pytest.fixture()
def subnet_run(tiny_model, tmp_path):
    """A finished tiny subnetwork run whose folder holds its facts as kg.pt, as a real run's does."""
    def batch(pairs):
        return kg.encode(tiny_model.tokenizer, [Triplet(h, "IsA", t) for h, t in pairs], template="isa_kind")

    target, control = batch(TARGET), batch(CONTROL)
    lm = _windows(2, n=6)
    eval_kg = {"target": target, "control": control}
    data = SubnetworkData(target=target, control=control, lm=lm, eval_kg=eval_kg, eval_lm=lm[:2])
    config = SubnetworkConfig(steps=2, window=16, lm_pool_tokens=96, lm_batch=2, control_batch=4, lm_top_k=8,
                              random_seeds=1, layers=(1,), n_target=None, min_target=1)
    folder = tmp_path / "s"
    find_subnetwork(tiny_model, config, folder, data=data, progress=False)
    torch.save({"key": {}, "kg": {"eval_kg": eval_kg}}, folder / "kg.pt")
    return folder


def test_relearn_a_subnetwork_on_other_facts_of_its_family_with_generalisation(tiny_model, subnet_run):
    # Random weights know nothing, so every fact counts as known here (top_k = the vocabulary).
    facts = FamilyConfig(n_facts=6, candidates=40, known_top_k=49152, sibling="isa:plant.n.02", random_seeds=2)
    result = relearn(tiny_model, subnet_run, RelearnConfig(**SMALL, facts=facts), progress=False)
    assert result.metric == "top10" and list(result.curves) == ["original", "learned", "random"]
    report = result.generalisation
    assert set(report["original"]) == {"target", "family_heldout", "sibling (isa:plant.n.02)"}
    heldout = report["facts"]["family_heldout"]
    assert len(heldout) == 6 and not any(p.split()[1] in {"dog", "cat", "horse", "cow"} for p in heldout)
    assert len(report["random"]["family_heldout"]["top10"]["values"]) == 2
    probe = result.probe
    assert probe["layers"] == [1] and probe["n_positive"] == 10 and probe["n_negative"] == 10
    assert 0 <= probe["learned"][1] <= 100 and len(probe["random"][1]["values"]) == 2
    bars = {t.name: t for t in family_generalisation({"animal": report, "again": report}).data}
    assert list(bars["learned"].x) == list(report["original"])
    assert list(bars["learned"].y) == [report["learned"][n]["top10"] for n in report["original"]]
    assert list(bars["random"].error_y.array) == [report["random"][n]["top10"]["std"] for n in report["original"]]


def test_the_probe_reads_a_linear_attribute_and_not_noise():
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (200,), generator=gen)
    features = torch.randn(200, 32, generator=gen)
    features[:, 3] += 4 * labels  # the attribute shifts one direction, as a linearly encoded one would
    assert probe_accuracy(features, labels) >= 95
    shuffled = labels[torch.randperm(200, generator=gen)]
    assert probe_accuracy(features, shuffled) <= 70
    with pytest.raises(ValueError, match="cannot be split into 5 folds"):
        probe_accuracy(features[:3], labels[:3])


def test_an_unfinished_subnetwork_run_is_refused(subnet_run):
    (subnet_run / "metrics.json").unlink()
    with pytest.raises(RuntimeError, match="has not finished.*resume"):
        open_run(subnet_run)


# --- command line ---------------------------------------------------------------------------------
def test_relearn_command_writes_relearn_json_and_refuses_bad_folders(tiny_model_dir, prune_run, tmp_path, capsys):
    args = ["relearn", str(prune_run), "--model", str(tiny_model_dir), "--device", "cpu", "--steps", "2",
            "--batch-size", "2", "--eval-tokens", "64", "--hold", "surgery"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "steps (tokens) to 50% recovery" in out and (prune_run / "relearn.html").exists()
    assert json.loads((prune_run / "relearn.json").read_text())["config"]["hold"] == "surgery"
    assert main(["relearn", str(tmp_path / "nothing")]) == 2
    assert "holds no circuitcut prune or subnet run" in capsys.readouterr().err

"""Knowledge-critical subnetworks: the straight-through mask, each loss term, frozen weights,
save/load, resume, error cases (tiny model), and a short end-to-end run on SmolLM2."""

from __future__ import annotations

import math

import pytest
import torch

from circuitcut.data import kg
from circuitcut.data.kg import Triplet
from circuitcut.masks import MaskMismatchError
from circuitcut.sites import ModelShape
from circuitcut.subnetwork import (
    SubnetworkConfig,
    SubnetworkData,
    SubnetworkMask,
    SubnetworkResult,
    build_data,
    compare,
    find_subnetwork,
    format_report,
    train_scores,
)
from circuitcut.subnetwork.data import KG_FIELDS
from circuitcut.subnetwork.mask import remover
from circuitcut.subnetwork.objective import (
    kl_from_uniform,
    kl_to_reference,
    learning_rate,
    reference,
    sparsity_weight,
    topk_kl,
)
from circuitcut.subnetwork.parametrize import MaskScores, gumbel_sigmoid, logit

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One thread: the tiny model's matrices are too small to share, and on a busy 2-core machine
    two spinning OpenMP threads made these tests 6x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TARGET = [("dog", "animal"), ("cat", "animal"), ("horse", "animal"), ("cow", "animal")]
CONTROL = [("rose", "flower"), ("oak", "tree"), ("car", "vehicle"), ("apple", "fruit"), ("hammer", "tool"), ("piano", "instrument")]


def _batch(model, pairs, template="isa_kind"):
    return kg.encode(model.tokenizer, [Triplet(h, "IsA", t) for h, t in pairs], template=template)


def tiny_data(model, control=CONTROL) -> SubnetworkData:
    target = _batch(model, TARGET)
    ctrl = _batch(model, control)
    lm = torch.randint(0, 5000, (6, 16), generator=torch.Generator().manual_seed(0))
    return SubnetworkData(
        target=target,
        control=ctrl,
        lm=lm,
        eval_kg={"target": target, "target_heldout": _batch(model, TARGET, "isa_type"), "control": ctrl},
        eval_lm=lm[:2],
    )


def tiny_config(**kw) -> SubnetworkConfig:
    base = dict(steps=4, window=16, lm_pool_tokens=96, lm_batch=2, control_batch=4, lm_top_k=8,
                log_every=1, checkpoint_every=2, random_seeds=2, layers=(1,))
    return SubnetworkConfig(**{**base, **kw})


def weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# --- parameterisation -----------------------------------------------------------------------


def test_straight_through_mask_is_hard_and_passes_gradient():
    scores = torch.full((1000,), logit(0.45), requires_grad=True)
    m = gumbel_sigmoid(scores, generator=torch.Generator().manual_seed(0))
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    assert 0.35 < m.mean().item() < 0.55  # P(m = 1) = sigmoid(score) = 0.45 at temperature 1
    (m * torch.arange(1.0, 1001.0)).sum().backward()
    assert scores.grad is not None and (scores.grad != 0).all()

    module = MaskScores({"a": (3, 4), "b": (5,)}, init_p=0.45)
    assert torch.allclose(module.scores[0], torch.full((3, 4), math.log(0.45 / 0.55)))
    with torch.no_grad():
        module.scores[1].copy_(torch.tensor([-2.0, 2.0, -0.1, 0.1, 3.0]))
    hard = module.hard()  # deterministic: the same every call, threshold sigmoid > 0.5
    assert hard["b"].tolist() == [False, True, False, True, True] and not hard["a"].any()
    assert module.hard()["b"].equal(hard["b"])
    expected = (torch.sigmoid(module.scores[0]).sum() + torch.sigmoid(module.scores[1]).sum()) / 17
    assert torch.allclose(module.density(), expected)


# --- loss terms against direct computations -------------------------------------------------


def test_loss_terms_match_direct_computation():
    torch.manual_seed(0)
    logits = torch.randn(3, 11)
    p = logits.softmax(-1)
    uniform = torch.full((11,), 1 / 11)
    direct = (uniform * (uniform.log() - p.log())).sum(-1).mean()
    assert torch.allclose(kl_from_uniform(logits), direct, atol=1e-6)
    assert kl_from_uniform(torch.zeros(2, 11)).abs() < 1e-6

    ref = torch.randn(3, 11).log_softmax(-1)
    direct = (ref.exp() * (ref - p.log())).sum(-1).mean()
    assert torch.allclose(kl_to_reference(ref, logits), direct, atol=1e-6)

    # top-k KL: the KL of the distributions coarse-grained to {k tokens, rest}; exact when k = vocab
    top = ref.topk(4, dim=-1)
    q = p.gather(-1, top.indices)
    ref_rest, q_rest = 1 - top.values.exp().sum(-1), 1 - q.sum(-1)
    direct = ((top.values.exp() * (top.values - q.log())).sum(-1) + ref_rest * (ref_rest.log() - q_rest.log())).mean()
    assert torch.allclose(topk_kl(top.indices, top.values, logits), direct, atol=1e-5)
    full = ref.topk(11, dim=-1)
    assert torch.allclose(topk_kl(full.indices, full.values, logits), kl_to_reference(ref, logits), atol=1e-4)
    assert topk_kl(top.indices, top.values, logits) <= kl_to_reference(ref, logits) + 1e-6


def test_schedules():
    assert sparsity_weight(0, 100, 2, 3) == 2 and sparsity_weight(49, 100, 2, 3) == 2
    assert sparsity_weight(99, 100, 2, 3) == pytest.approx(3)
    assert 2 < sparsity_weight(75, 100, 2, 3) < 3
    assert learning_rate(0, 100, 0.2, 0.1) == pytest.approx(0.02)
    assert learning_rate(9, 100, 0.2, 0.1) == pytest.approx(0.2) == learning_rate(60, 100, 0.2, 0.1)


def test_reference_cache_matches_model(tiny_model):
    data = tiny_data(tiny_model)
    ref = reference(tiny_model, data.control.tokens, data.control.predict_pos, data.lm, top_k=8)
    with torch.no_grad():
        direct = tiny_model(data.control.tokens).log_softmax(-1)[torch.arange(len(data.control)), data.control.predict_pos]
        lm = tiny_model(data.lm).log_softmax(-1).topk(8, dim=-1)
    assert torch.allclose(ref.control_logp, direct, atol=1e-5)
    assert torch.equal(ref.lm_index, lm.indices) and torch.allclose(ref.lm_logp, lm.values, atol=1e-5)


# --- masks on the model ---------------------------------------------------------------------


@pytest.mark.parametrize("granularity", ["weight", "neuron"])
def test_removal_context_surgery_and_restore(tiny_model, tiny_model_dir, granularity):
    import circuitcut

    config = tiny_config(granularity=granularity, layers=(0, 1))
    sites = config.sites(tiny_model)
    gen = torch.Generator().manual_seed(1)
    mask = SubnetworkMask(ModelShape.of(tiny_model), granularity,
                          {n: torch.rand(s, generator=gen) < 0.3 for n, s in sites.items()})
    tokens = torch.randint(0, 5000, (2, 9))
    before = weights(tiny_model)
    with torch.no_grad():
        original = tiny_model(tokens)
        with mask.removed(tiny_model):
            removed = tiny_model(tokens)
        restored = tiny_model(tokens)
        # all-ones keep is the original model
        with remover(tiny_model, granularity, {n: torch.ones(s) for n, s in sites.items()}):
            assert torch.allclose(tiny_model(tokens), original)
    assert not torch.allclose(removed, original)
    assert torch.equal(restored, original)
    assert all(torch.equal(before[n], p) for n, p in tiny_model.named_parameters())

    other = circuitcut.load_model(str(tiny_model_dir), device="cpu")
    mask.remove_from(other)
    with torch.no_grad():
        assert torch.allclose(other(tokens), removed, atol=1e-5)

    twin = mask.random_like(seed=3)
    assert twin.per_site() == mask.per_site() and compare(mask, twin)["overall"] < 1
    assert compare(mask, mask)["overall"] == 1.0 and set(compare(mask, twin)["per_layer"]) == {0, 1}
    assert mask.sparsity() == pytest.approx(100 * (1 - mask.n_subnetwork() / mask.n_units()))


def test_mask_sites_default_top_half(tiny_model):
    sites = SubnetworkConfig(granularity="weight").sites(tiny_model)
    assert set(sites) == {f"blocks.1.{m}" for m in ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.in", "mlp.out")}
    assert sites["blocks.1.mlp.out"] == (64, 96)
    neurons = SubnetworkConfig().sites(tiny_model)
    assert neurons == {"blocks.1.mlp.hook_post": (96,), "blocks.1.attn.hook_v": (32,)}


# --- training -------------------------------------------------------------------------------


@pytest.mark.parametrize("granularity", ["weight", "neuron"])
def test_training_moves_scores_never_weights(tiny_model, granularity):
    before = weights(tiny_model)
    flags = {n: p.requires_grad for n, p in tiny_model.named_parameters()}
    scores, history = train_scores(tiny_model, tiny_config(granularity=granularity), tiny_data(tiny_model), progress=False)
    assert all(torch.equal(before[n], p) for n, p in tiny_model.named_parameters())
    assert {n: p.requires_grad for n, p in tiny_model.named_parameters()} == flags
    assert all(p.grad is None for p in tiny_model.parameters())
    assert any((s != logit(0.45)).any() for s in scores.scores)
    assert [r["step"] for r in history] == [0, 1, 2, 3]
    assert {"suppression", "control_kg", "control_lm", "density", "loss", "sparsity"} <= set(history[0])


def test_resume_equals_uninterrupted(tiny_model, tmp_path):
    config, data = tiny_config(), tiny_data(tiny_model)
    full, full_history = train_scores(tiny_model, config, data, progress=False)

    class Stop(Exception):
        pass

    def stop_at_2(step, record):
        if step == 2:  # the checkpoint after step index 1 (2 steps) is on disk; step 2 is lost
            raise Stop

    with pytest.raises(Stop):
        train_scores(tiny_model, config, data, checkpoint=tmp_path / "ck.pt", progress=False, on_step=stop_at_2)
    resumed, history = train_scores(tiny_model, config, data, checkpoint=tmp_path / "ck.pt", progress=False)
    assert all(torch.equal(a, b) for a, b in zip(full.scores, resumed.scores))
    assert [r["loss"] for r in history] == [r["loss"] for r in full_history]
    with pytest.raises(ValueError, match="another config"):
        train_scores(tiny_model, tiny_config(lr=0.1), data, checkpoint=tmp_path / "ck.pt", progress=False)


def test_find_subnetwork_saves_and_loads(tiny_model, tmp_path):
    config = tiny_config(random_seeds=2)
    result = find_subnetwork(tiny_model, config, tmp_path / "run", progress=False, data=tiny_data(tiny_model))
    for name in ("config.json", "mask.safetensors", "metrics.json", "checkpoint.pt"):
        assert (tmp_path / "run" / name).exists()
    m = result.metrics
    assert set(m["change"]) == {"target", "target_heldout", "control", "lm"}
    assert all("dppl" in c for c in m["change"].values()) and "dppl_tail" in m["change"]["target"]
    assert len(m["random"]["per_seed"]) == 2 and "std" in m["random"]["change"]["target"]["dppl"]
    assert m["sparsity"] == pytest.approx(result.mask.sparsity())
    assert "target_heldout" in format_report(m)

    loaded = SubnetworkResult.load(tmp_path / "run", tiny_model)
    assert loaded.config == config and loaded.history == result.history
    assert all(torch.equal(loaded.mask.subnetwork[n], v) for n, v in result.mask.subnetwork.items())
    assert loaded.metrics["change"] == m["change"]
    # without a data override a finished folder is loaded: no facts are built or scored again
    assert find_subnetwork(tiny_model, config, tmp_path / "run", progress=False).metrics == loaded.metrics

    # started again on a finished run folder: resumes at the last step, trains nothing, same result
    again = find_subnetwork(tiny_model, config, tmp_path / "run", progress=False, data=tiny_data(tiny_model))
    assert again.history == result.history and all(torch.equal(again.mask.subnetwork[n], v) for n, v in result.mask.subnetwork.items())
    with pytest.raises(ValueError, match="another config"):
        find_subnetwork(tiny_model, tiny_config(steps=5), tmp_path / "run", progress=False, data=tiny_data(tiny_model))


def test_data_seed_keeps_the_data_across_mask_seeds(tiny_model):
    """Two mask seeds on one ``data_seed`` see the same facts and text; without it the seed picks both."""
    same_data = [tiny_config(seed=s, data_seed=0) for s in (0, 1)]
    assert [c.sample_seed for c in same_data] == [0, 0] and tiny_config(seed=1).sample_seed == 1
    assert len({tuple(getattr(c, f) for f in KG_FIELDS) for c in same_data}) == 1  # one cached fact set
    kg_parts = {n: getattr(tiny_data(tiny_model), n) for n in ("target", "control", "eval_kg", "facts")}
    lm = [build_data(tiny_model, c, kg_parts).lm for c in (*same_data, tiny_config(seed=1))]
    assert torch.equal(lm[0], lm[1]) and not torch.equal(lm[0], lm[2])
    assert SubnetworkConfig.from_dict(same_data[1].to_dict()) == same_data[1]


def test_mask_for_another_model_is_refused(tiny_model, smollm2, tmp_path):
    mask = SubnetworkMask(ModelShape.of(tiny_model), "neuron", {"blocks.1.mlp.hook_post": torch.zeros(96, dtype=torch.bool)})
    mask.save(tmp_path / "mask.safetensors")
    with pytest.raises(MaskMismatchError, match="found on"):
        SubnetworkMask.load(tmp_path / "mask.safetensors", smollm2)
    with pytest.raises(MaskMismatchError, match="found on"):
        mask.removed(smollm2)
    assert SubnetworkMask.load(tmp_path / "mask.safetensors", tiny_model).n_subnetwork() == 0


# --- bad input ------------------------------------------------------------------------------


def test_bad_input_is_refused_clearly(tiny_model):
    with pytest.raises(ValueError, match="TargetKG is empty"):
        data = tiny_data(tiny_model)
        data.target = data.target[[]]
        train_scores(tiny_model, tiny_config(), data, progress=False)
    with pytest.raises(ValueError, match="both TargetKG and ControlKG"):
        train_scores(tiny_model, tiny_config(), tiny_data(tiny_model, control=CONTROL + TARGET[:1]), progress=False)
    with pytest.raises(ValueError, match="granularity"):
        SubnetworkConfig(granularity="head")
    with pytest.raises(ValueError, match="steps must be positive"):
        SubnetworkConfig(steps=0)
    with pytest.raises(ValueError, match="init_p"):
        SubnetworkConfig(init_p=1.0)
    with pytest.raises(ValueError, match="matrices"):
        SubnetworkConfig(matrices=("mlp.up",))
    with pytest.raises(ValueError, match="Unknown site kind"):
        SubnetworkConfig(neuron_kinds=("heads",))
    with pytest.raises(ValueError, match="do not exist"):
        SubnetworkConfig(layers=(5,)).sites(tiny_model)
    with pytest.raises(ValueError, match="Unknown subnetwork config fields"):
        SubnetworkConfig.from_dict({"stepz": 3})
    with pytest.raises(kg.KGError):
        find_subnetwork(tiny_model, SubnetworkConfig(target="isa:"), progress=False)


# --- end to end on the bundled model --------------------------------------------------------


@pytest.mark.real
def test_short_run_on_smollm2(smollm2, tmp_path):
    from torch.nn.utils import parametrize

    from circuitcut.data.corpora import corpus_windows

    target = _batch(smollm2, TARGET)
    control = _batch(smollm2, CONTROL)
    lm = corpus_windows("prose", smollm2.tokenizer, n_tokens=256, window=32, split="stats")
    data = SubnetworkData(target, control, lm, eval_kg={"target": target, "control": control},
                          eval_lm=corpus_windows("prose", smollm2.tokenizer, n_tokens=64, window=32, split="eval"))
    config = SubnetworkConfig(steps=3, layers=(28, 29), neuron_kinds=("mlp",), window=32, lm_pool_tokens=256,
                              lm_batch=2, control_batch=4, random_seeds=1, log_every=1)
    before = {n: p.detach().clone() for n, p in smollm2.named_parameters() if "blocks.29" in n}
    result = find_subnetwork(smollm2, config, tmp_path / "run", progress=False, data=data)
    assert [r["step"] for r in result.history] == [0, 1, 2]
    assert result.mask.n_units() == 2 * 1536 and 0 <= result.mask.sparsity() <= 100
    assert result.metrics["original"]["target"]["top10"] > 50  # the model knows these facts
    assert {"target", "control", "lm"} == set(result.metrics["random"]["change"])
    assert all(torch.equal(p, before[n]) for n, p in smollm2.named_parameters() if n in before)
    assert not any(parametrize.is_parametrized(m) for m in smollm2.modules())

import json
import shutil
from dataclasses import asdict

import pytest
import torch
from model_files import TOKENIZER_FILES
from transformers import LlamaConfig, LlamaForCausalLM

import circuitcut
from circuitcut.masks import Mask, MaskMismatchError, mean_activations
from circuitcut.sites import ModelShape


def _random_mask(model, kinds, frac=0.3, seed=0):
    shape = ModelShape.of(model)
    g = torch.Generator().manual_seed(seed)
    return Mask.from_kinds(shape, {k: torch.rand(shape.n_layers, shape.n_neurons(k), generator=g) < frac for k in kinds})


@pytest.mark.parametrize("kinds", [["mlp"], ["attn_v"], ["attn_z"], ["mlp", "attn_v", "attn_z"]])
def test_hooks_and_weight_surgery_give_the_same_logits(tiny_model, kinds):
    tokens = torch.randint(0, 1000, (2, 12), generator=torch.Generator().manual_seed(0))
    mask = _random_mask(tiny_model, kinds)
    with torch.inference_mode(), mask.remaining(tiny_model):
        hooked = tiny_model(tokens)
    with torch.inference_mode():
        original = tiny_model(tokens)
    mask.remove_from(tiny_model)
    with torch.inference_mode():
        cut = tiny_model(tokens)
    assert not torch.allclose(original, hooked, atol=1e-3)
    torch.testing.assert_close(cut, hooked, atol=1e-5, rtol=1e-4)


def test_mask_round_trips_and_applies_to_a_fresh_model(tiny_model, tiny_model_dir, tmp_path):
    mask = _random_mask(tiny_model, ["mlp", "attn_v"])
    mask.save(tmp_path / "mask.safetensors", {"method": "test"})
    fresh = circuitcut.load_model(str(tiny_model_dir), device="cpu")
    loaded = Mask.load(tmp_path / "mask.safetensors", fresh)
    for kind in ("mlp", "attn_v"):
        assert torch.equal(loaded.by_kind()[kind], mask.by_kind()[kind])
    assert loaded.fraction()["mlp"] == pytest.approx(mask.fraction()["mlp"])


@pytest.mark.real
def test_a_mask_for_another_model_is_refused(tiny_model, smollm2, tmp_path):
    mask = _random_mask(smollm2, ["mlp"])
    mask.save(tmp_path / "smol.safetensors")
    with pytest.raises(MaskMismatchError, match="made for HuggingFaceTB/SmolLM2-135M-Instruct"):
        Mask.load(tmp_path / "smol.safetensors", tiny_model)


def _tiny_variant(tiny_model_dir, folder, **changes):
    """The tiny checkpoint with other dimensions (same tokenizer), loaded as users load a folder."""
    config = LlamaConfig.from_pretrained(tiny_model_dir)
    for key, value in changes.items():
        setattr(config, key, value)
    LlamaForCausalLM(config).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        if (tiny_model_dir / name).exists():
            shutil.copy(tiny_model_dir / name, folder / name)
    return circuitcut.load_model(str(folder), device="cpu")


@pytest.mark.parametrize("changes", [{"num_hidden_layers": 3}, {"intermediate_size": 128}])
def test_every_way_of_applying_a_mask_refuses_another_model_shape(tiny_model, tiny_model_dir, tmp_path, changes):
    """hooks() never looked at the model: layers 0-1 of a deeper model were masked silently, and
    another width failed deep inside the forward pass."""
    mask = _random_mask(tiny_model, ["mlp"])
    mask.save(tmp_path / "mask.safetensors")
    other = _tiny_variant(tiny_model_dir, tmp_path / "other", **changes)
    for apply in (mask.hooks, mask.remaining, mask.remove_from,
                  lambda model: Mask.load(tmp_path / "mask.safetensors", model)):
        with pytest.raises(MaskMismatchError, match=r"was made for .*\(2 layers, d_model 64, d_mlp 96\) but the model"):
            apply(other)


def test_a_mask_whose_tensors_do_not_fit_its_shape_is_refused(tiny_model):
    shape = ModelShape.of(tiny_model)
    with pytest.raises(MaskMismatchError, match=r"mlp mask has shape \(3, 96\) but .* needs \(2, 96\)"):
        Mask.from_kinds(shape, {"mlp": torch.zeros(3, 96, dtype=torch.bool)})
    with pytest.raises(MaskMismatchError, match=r"blocks.1.mlp.hook_post mask has shape \(95,\)"):
        Mask(shape, "neuron", {"blocks.1.mlp.hook_post": torch.zeros(95, dtype=torch.bool)})


def test_a_pruning_mask_file_of_the_old_format_still_loads(tiny_model, tmp_path):
    """Before there was one mask type, pruning saved one [layer, neuron] tensor per site kind, no granularity."""
    from safetensors.torch import save_file

    mask = _random_mask(tiny_model, ["mlp", "attn_v"])
    old = {kind: m.to(torch.uint8) for kind, m in mask.by_kind().items()}
    meta = {"model_shape": json.dumps(asdict(mask.shape)), "method": "selective", "step": "3"}
    save_file(old, str(tmp_path / "old.safetensors"), metadata=meta)
    loaded = Mask.load(tmp_path / "old.safetensors", tiny_model)
    assert loaded.granularity == "neuron" and loaded.fill == "zero"
    assert loaded.removed.keys() == mask.removed.keys()
    assert all(torch.equal(loaded.removed[n], m) for n, m in mask.removed.items())


def test_set_algebra_site_by_site(tiny_model):
    a, b = _random_mask(tiny_model, ["mlp"], seed=0), _random_mask(tiny_model, ["mlp"], seed=1)
    site = "blocks.1.mlp.hook_post"
    assert torch.equal((a | b).removed[site], a.removed[site] | b.removed[site])
    assert torch.equal((a & b).removed[site], a.removed[site] & b.removed[site])
    assert torch.equal((a - b).removed[site], a.removed[site] & ~b.removed[site])
    assert (a - a).n_removed() == 0 and (a | a).n_removed() == a.n_removed()
    # a site only one mask has removes nothing in the other
    attn = _random_mask(tiny_model, ["attn_v"])
    both = a | attn
    assert both.n_removed() == a.n_removed() + attn.n_removed() and (a & attn).n_removed() == 0
    weights = Mask(a.shape, "weight", {"blocks.1.mlp.in": torch.ones(96, 64, dtype=torch.bool)})
    with pytest.raises(MaskMismatchError, match="same model and granularity"):
        a | weights


def test_sizes_of_a_neuron_mask(tiny_model):
    mask = Mask.empty(ModelShape.of(tiny_model), ["mlp", "attn_v"])
    mask.removed["blocks.1.mlp.hook_post"][:24] = True
    mask.removed["blocks.0.attn.hook_v"][:8] = True
    assert mask.fraction() == {"mlp": 24 / 192, "attn_v": 8 / 64}
    assert mask.per_layer()[1]["subnetwork"] == 24 and mask.per_layer()[0]["subnetwork"] == 8
    assert mask.per_part()["mlp"]["units"] == 192
    assert mask.n_removed() == 32 and mask.sparsity() == pytest.approx(100 * (1 - 32 / 256))
    assert mask.by_kind()["mlp"].sum(1).tolist() == [0, 24]


def test_mean_fill_sets_removed_neurons_to_their_mean_and_keeps_the_rest(tiny_model, tmp_path):
    site = "blocks.1.mlp.hook_post"
    mask = Mask.empty(ModelShape.of(tiny_model), ["mlp"])
    mask.removed[site][[3, 40, 77]] = True
    windows = torch.randint(0, 1000, (3, 12), generator=torch.Generator().manual_seed(0))
    removed = mask.removed[site]
    with torch.inference_mode():
        _, cache = tiny_model.run_with_cache(windows, names_filter=site)
        means = mean_activations(tiny_model, windows, ["mlp"], batch_size=2)
        assert torch.allclose(means[site], cache[site].float().mean((0, 1)), atol=1e-5)
        filled = mask.with_means(means)
        (name, hook), = filled.hooks(tiny_model)
        out = hook(cache[site], None)
        assert name == site
        assert torch.allclose(out[..., removed], means[site][removed].expand_as(out[..., removed]))
        assert torch.equal(out[..., ~removed], cache[site][..., ~removed])
        zeroed, averaged = (_logits(tiny_model, m, windows) for m in (mask, filled))
        assert not torch.allclose(zeroed, averaged, atol=1e-4)
    filled.save(tmp_path / "mean.safetensors")
    loaded = Mask.load(tmp_path / "mean.safetensors", tiny_model)
    assert loaded.fill == "mean" and torch.equal(loaded.means[site], filled.means[site])
    with pytest.raises(ValueError, match="use mask.remaining"):
        filled.remove_from(tiny_model)
    with pytest.raises(ValueError, match="needs every site's mean"):
        Mask(mask.shape, "neuron", mask.removed, fill="mean")


def _logits(model, mask, windows):
    with mask.remaining(model):
        return model(windows)


def test_a_weight_mask_removes_by_hooks_and_by_surgery_alike(tiny_model):
    from circuitcut.weight_masks import weight_module

    gen = torch.Generator().manual_seed(0)
    names = ["blocks.0.attn.q", "blocks.1.mlp.out"]
    mask = Mask(ModelShape.of(tiny_model), "weight",
                {n: torch.rand(weight_module(tiny_model, n).weight.shape, generator=gen) < 0.3 for n in names})
    tokens = torch.randint(0, 1000, (2, 12), generator=gen)
    with torch.inference_mode():
        original = tiny_model(tokens)
        hooked = _logits(tiny_model, mask, tokens)
        assert torch.equal(tiny_model(tokens), original)  # restored after the context
    mask.remove_from(tiny_model)
    with torch.inference_mode():
        torch.testing.assert_close(tiny_model(tokens), hooked, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(original, hooked, atol=1e-3)
    with pytest.raises(ValueError, match="weight mask"):
        mask.hooks(tiny_model)

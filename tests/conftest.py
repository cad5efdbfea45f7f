"""Shared fixtures: SmolLM2's tokenizer, a tiny random Llama saved as a local checkpoint with it, and
the bundled SmolLM2 itself (``real`` tests only: dequantizing it is slow)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

import circuitcut
from circuitcut.models import EMBEDDED, embedded_checkpoint
from model_files import TOKENIZER_FILES
from subnetwork_helpers import write_planted_model


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The dequantized SmolLM2 checkpoint (built once per cache)."""
    return embedded_checkpoint("smollm2")


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """SmolLM2's tokenizer files, read from the GGUF file alone (the same files the dequantized
    checkpoint holds), so that tiny-model tests never dequantize the weights."""
    folder = tmp_path_factory.mktemp("smollm2-tokenizer")
    gguf = EMBEDDED["smollm2"].gguf()
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    return AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer_dir) -> Path:
    """A 2-layer grouped-query Llama with SmolLM2's tokenizer, saved as a Hugging Face folder.

    Loading it goes through the same by-path loader users call, so that path is tested too.
    """
    folder = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    config.architectures = ["LlamaForCausalLM"]
    LlamaForCausalLM(config).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).exists():
            shutil.copy(tokenizer_dir / name, folder / name)
    return folder


@pytest.fixture()
def tiny_model(tiny_model_dir):
    """A fresh tiny bridge per test (tests may prune it in place)."""
    return circuitcut.load_model(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="session")
def planted_dir(tiny_model_dir, tmp_path_factory):
    """The tiny Llama with one neuron planted to carry one fact (:func:`subnetwork_helpers.write_planted_model`)."""
    return write_planted_model(tiny_model_dir, tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="session")
def smollm2():
    """The bundled real model, loaded once; tests must not modify its weights."""
    return circuitcut.load_model("smollm2", device="cpu")

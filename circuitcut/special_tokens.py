"""The special tokens a tokenizer puts before any text by default: what a model's own input starts with.

Gemma-3's tokenizer puts ``<bos>`` first, SmolLM2's puts nothing; a model measured without what
its tokenizer gives is measured off its usual input (Gemma-3's prose perplexity is several times
higher without its BOS). Windows of text and knowledge-graph prompts start with these tokens.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase


def window_prefix(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The ids ``tokenizer("text")`` puts before the text's own tokens (``[BOS]`` or nothing)."""
    probe = "a"
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start])
    return []

"""Files a tiny test checkpoint copies from SmolLM2 so it tokenizes like the real model."""

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

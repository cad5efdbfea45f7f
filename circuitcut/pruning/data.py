"""The token sets of a pruning run: statistics and evaluation splits of the forget and retain corpora."""

from __future__ import annotations

from dataclasses import dataclass

from jaxtyping import Int
from torch import Tensor

from circuitcut.data.corpora import corpus_windows
from circuitcut.pruning.config import PruningConfig


@dataclass
class PruningData:
    """The four token sets of a run: statistics and evaluation splits of forget and retain."""

    forget_stats: Int[Tensor, "n pos"]
    retain_stats: Int[Tensor, "n pos"]
    forget_eval: Int[Tensor, "n pos"]
    retain_eval: Int[Tensor, "n pos"]

    @classmethod
    def from_config(cls, tokenizer, config: PruningConfig) -> PruningData:
        def windows(corpus: str, split: str) -> Tensor:
            return corpus_windows(corpus, tokenizer, n_tokens=config.tokens, window=config.window,
                                  split=split, seed=config.seed)

        return cls(windows(config.forget, "stats"), windows(config.retain, "stats"),
                   windows(config.forget, "eval"), windows(config.retain, "eval"))

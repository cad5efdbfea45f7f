"""The data a subnetwork run needs, built from a target spec: TargetKG, ControlKG, ControlLM.

TargetKG and ControlKG come from :mod:`circuitcut.data.kg` (facts the model knows, verbalized
with each fact's chosen training template; held-out paraphrases only for evaluation); ControlLM
windows from :mod:`circuitcut.data.corpora` (the ``stats`` split trains, the ``eval`` split
evaluates).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from jaxtyping import Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.data import kg
from circuitcut.data.corpora import corpus_windows
from circuitcut.data.kg import KGBatch


@dataclass
class SubnetworkData:
    """Training batches, evaluation batches and the facts behind them (for reports)."""

    target: KGBatch
    control: KGBatch
    lm: Int[Tensor, "n_windows window"]
    eval_kg: dict[str, KGBatch] = field(default_factory=dict)
    """Evaluation facts by dataset: ``target``, ``target_heldout``, ``control``, ``control_heldout``."""
    eval_lm: Int[Tensor, "n_windows window"] | None = None
    facts: dict[str, list[str]] = field(default_factory=dict)

    def check(self) -> None:
        """Refuse data a run cannot learn from: no target or control facts, or facts in both."""
        if len(self.target) == 0:
            raise ValueError("TargetKG is empty: there are no facts to suppress.")
        if len(self.control) == 0:
            raise ValueError("ControlKG is empty: there are no facts to keep.")
        if len(self.lm) == 0:
            raise ValueError("ControlLM is empty: give at least one window of text.")
        shared = _rows(self.target) & _rows(self.control)
        if shared:
            raise ValueError(
                f"{len(shared)} fact(s) are in both TargetKG and ControlKG (the same prompt and tail); "
                "a fact cannot be both suppressed and kept. Remove them from the control."
            )


def _rows(batch: KGBatch) -> set[tuple[tuple[int, ...], int]]:
    """Each fact as (prompt tokens, first tail token)."""
    return {
        (tuple(batch.tokens[i, : int(batch.predict_pos[i]) + 1].tolist()), int(batch.tail_token[i]))
        for i in range(len(batch))
    }


#: the config fields that decide the KG facts (scoring them is the slow part of building data)
KG_FIELDS = ("target", "isa_depth", "n_candidates", "control_candidates", "n_target", "min_target", "n_control",
             "known_top_k", "sample_seed")


def build_kg(model: TransformerBridge, config) -> dict:
    """TargetKG for ``config.target`` and ControlKG away from its family, encoded for training and evaluation.

    Only a seeded sample of candidate facts is scored (``n_candidates`` from the target family,
    ``control_candidates`` from elsewhere): checking what the model knows costs one forward pass
    per template.
    """
    tokenizer = model.tokenizer
    spec = kg.parse_spec(config.target)
    triplets = kg.load_wordnet(isa_depth=config.isa_depth)
    family = [t for t in triplets if kg.in_target(t, spec)]
    if not family:
        raise kg.KGError(f"No WordNet triplets fall under the target {config.target!r}.")
    others = [t for t in triplets if not kg.in_target(t, spec)]
    rng = random.Random(config.sample_seed)
    candidates = _sample(family, config.n_candidates, rng) + _sample(others, config.control_candidates, rng)
    # Held-out templates are only evaluated, never chosen, so they need no scoring here.
    known = kg.known_triplets(model, candidates, top_k=config.known_top_k, heldout=False)
    target = kg.select_target(spec, known, n=config.n_target, min_n=config.min_target, seed=config.sample_seed)
    control = kg.select_control(known, exclude=target, n=config.n_control, seed=config.sample_seed)
    kg.check_disjoint(target, control)
    return {
        "target": target.encode(tokenizer),
        "control": control.encode(tokenizer),
        "eval_kg": {
            "target": target.encode(tokenizer),
            "target_heldout": target.encode(tokenizer, template="heldout"),
            "control": control.encode(tokenizer),
            "control_heldout": control.encode(tokenizer, template="heldout"),
        },
        "facts": {"target": [str(k) for k in target], "control": [str(k) for k in control]},
    }


def build_data(model: TransformerBridge, config, kg_parts: dict | None = None) -> SubnetworkData:
    """The run's data: the KG parts (:func:`build_kg`, or given) and ControlLM windows."""
    kg_parts = kg_parts if kg_parts is not None else build_kg(model, config)
    windows = dict(tokenizer=model.tokenizer, window=config.window, seed=config.sample_seed)
    return SubnetworkData(
        **kg_parts,
        lm=corpus_windows(config.lm_corpus, n_tokens=config.lm_pool_tokens, split="stats", **windows),
        eval_lm=corpus_windows(config.lm_corpus, n_tokens=config.eval_lm_tokens, split="eval", **windows),
    )


def _sample(items: list, n: int, rng: random.Random) -> list:
    return items if len(items) <= n else rng.sample(items, n)

"""A tiny atlas: real subnetwork runs on the tiny model, on facts of their own per target (the tiny model knows
no WordNet fact, so each run's data is given)."""

from __future__ import annotations

from dataclasses import replace

from subnetwork_helpers import CONTROL, isa_batch, tiny_data

TINY_TARGETS = {
    "isa:animal.n.01": [("dog", "animal"), ("cat", "animal"), ("horse", "animal"), ("cow", "animal")],
    "isa:mammal.n.01": [("dog", "mammal"), ("whale", "mammal"), ("bat", "mammal")],
    "isa:food.n.01": [("bread", "food"), ("rice", "food"), ("soup", "food"), ("cheese", "food")],
}
"""Each tiny target's facts (the target family's, as far as a random model can have one)."""

TINY_RUN = dict(steps=4, window=16, lm_pool_tokens=96, lm_batch=2, control_batch=4, lm_top_k=8, log_every=1,
                checkpoint_every=2, validate_every=2, random_seeds=1, layers=(1,))
"""Settings laid over every atlas run's preset: a few steps on layer 1 of the tiny model."""


def tiny_target_data(model, config):
    """The tiny data with ``config.target``'s facts as TargetKG, and facts.json lines as a real run writes them."""
    pairs = TINY_TARGETS[config.target]
    target = isa_batch(model, pairs)
    data = tiny_data(model)
    data = replace(data, target=target, eval_kg={**data.eval_kg, "target": target},
                   val_kg={**data.val_kg, "target": isa_batch(model, pairs, "isa_article")})
    lines = lambda b: [f"{p}|{c} (rank 1, ppl 2.0)" for p, c in zip(b.prompts, b.continuations)]  # noqa: E731
    data.facts = {"target": lines(target), "control": lines(isa_batch(model, CONTROL))}
    return data

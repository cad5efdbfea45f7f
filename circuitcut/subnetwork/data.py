"""The data a subnetwork run needs, built from a target spec: TargetKG, ControlKG, ControlLM, in three roles.

* training: the target facts on their chosen template (or, with ``target_templates="train"``, on
  every training template), ``n_control`` control facts, a ControlLM pool;
* validation (the rule that picks the final mask, :mod:`~circuitcut.subnetwork.selection`): the
  target facts on sentences never trained on (their *other* training templates, or the relation's
  validation paraphrases; the rule counts the rows the original model ranks in its top 10),
  ``n_control_val`` further control facts, ControlLM windows after the training pool;
* evaluation (the reported numbers): the target facts on their chosen and held-out paraphrase
  templates, the training control facts and ``n_control_new`` control facts never seen before, each
  also on paraphrases, and ControlLM windows of the corpus's ``eval`` split.

The facts come from :mod:`circuitcut.data.kg` (facts the model knows), the windows from
:mod:`circuitcut.data.corpora` (``stats`` split for training and validation, ``eval`` for evaluation).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from jaxtyping import Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge

from circuitcut.data import kg
from circuitcut.data.corpora import corpus_windows
from circuitcut.data.kg import KGBatch, KnowledgeSet

EVAL_SETS = ("target", "target_paraphrase", "control", "control_paraphrase", "control_new", "control_new_paraphrase")
"""The evaluation datasets (besides ControlLM, ``lm``), in report order."""


@dataclass
class SubnetworkData:
    """Training, validation and evaluation batches and the facts behind them (for reports)."""

    target: KGBatch
    control: KGBatch
    lm: Int[Tensor, "n_windows window"]
    eval_kg: dict[str, KGBatch] = field(default_factory=dict)
    """Evaluation facts by dataset (:data:`EVAL_SETS`)."""
    eval_lm: Int[Tensor, "n_windows window"] | None = None
    val_kg: dict[str, KGBatch] = field(default_factory=dict)
    """Validation facts: ``target`` (other templates) and ``control`` (facts of their own)."""
    val_lm: Int[Tensor, "n_windows window"] | None = None
    facts: dict[str, list[str]] = field(default_factory=dict)

    def sequences(self) -> list[Int[Tensor, "n pos"]]:
        """Every token tensor a run feeds the model: fact rows without their last column (which predicts
        nothing, see :func:`~circuitcut.subnetwork.objective.kg_logits`) and text windows."""
        facts = [self.target, self.control, *self.val_kg.values(), *self.eval_kg.values()]
        windows = [t for t in (self.lm, self.val_lm, self.eval_lm) if t is not None]
        return [b.tokens[:, :-1] for b in facts if len(b)] + windows

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


def check_target(config) -> kg.TargetSpec:
    """The parsed target, refused (before any model loads) when its facts lack the templates the config trains or validates on."""
    spec = kg.parse_spec(config.target)
    if config.target_templates == "train" and (spec.relation is None or not kg.templates_for(spec.relation, "validation")):
        raise kg.KGError(f"target_templates='train' validates on paraphrases of the target's relation, which "
                         f"{config.target!r} lacks (IsA has them: 'isa:<synset>'); use target_templates='chosen'.")
    return spec


def build_kg(model: TransformerBridge, config) -> dict:
    """TargetKG for ``config.target`` and ControlKG away from its family, encoded for every role.

    Only a seeded sample of candidate facts is scored (``n_candidates`` from the target family,
    ``control_candidates`` from elsewhere): checking what the model knows costs one forward pass
    per template. The target family is scored first, so a target with too few known facts is
    refused before the controls are scored. The known control facts are split into validation,
    never-seen and training facts, in that order of priority.
    """
    tokenizer = model.tokenizer
    spec = check_target(config)
    family, others = candidate_facts(config, spec)
    # Held-out templates are only evaluated, never chosen, so they need no scoring here.
    known = kg.known_triplets(model, family, top_k=config.known_top_k, heldout=False)
    target = kg.select_target(spec, known, n=config.n_target, min_n=config.min_target, seed=config.sample_seed)
    known += kg.known_triplets(model, others, top_k=config.known_top_k, heldout=False)
    n_all = config.n_control_val + config.n_control_new + config.n_control
    pool = kg.select_control(known, exclude=target, n=n_all, seed=config.sample_seed)
    val, new, control = _split(pool, (config.n_control_val, config.n_control_new, config.n_control))
    kg.check_disjoint(target, pool)
    if config.target_templates == "train":
        trained, val_target = target.encode(tokenizer, template="train"), target.encode(tokenizer, template="validation")
    else:
        trained, val_target = target.encode(tokenizer), _other_templates(target, tokenizer)
    return {
        "target": trained,
        "control": control.encode(tokenizer),
        "val_kg": {"target": val_target, "control": val.encode(tokenizer)},
        "eval_kg": {
            "target": target.encode(tokenizer),
            "target_paraphrase": target.encode(tokenizer, template="heldout"),
            "control": control.encode(tokenizer),
            "control_paraphrase": control.encode(tokenizer, template="heldout"),
            "control_new": new.encode(tokenizer),
            "control_new_paraphrase": new.encode(tokenizer, template="heldout"),
        },
        "facts": {"target": [str(k) for k in target], "control": [str(k) for k in control],
                  "control_val": [str(k) for k in val], "control_new": [str(k) for k in new]},
    }


def candidate_facts(config, spec: kg.TargetSpec) -> tuple[list[kg.Triplet], list[kg.Triplet]]:
    """The candidate facts a run scores: a seeded sample of ``n_candidates`` WordNet facts of the target family
    and one of ``control_candidates`` from elsewhere (no model needed)."""
    triplets = kg.load_wordnet(isa_depth=config.isa_depth)
    family = [t for t in triplets if kg.in_target(t, spec)]
    if not family:
        raise kg.KGError(f"No WordNet triplets fall under the target {config.target!r}.")
    others = [t for t in triplets if not kg.in_target(t, spec)]
    if config.named_tails == "drop":
        family, others = ([t for t in ts if not t.tail_named_in_head] for ts in (family, others))
    rng = random.Random(config.sample_seed)
    return _sample(family, config.n_candidates, rng), _sample(others, config.control_candidates, rng)


def build_data(model: TransformerBridge, config, kg_parts: dict | None = None) -> SubnetworkData:
    """The run's data: the KG parts (:func:`build_kg`, or given) and ControlLM windows."""
    kg_parts = kg_parts if kg_parts is not None else build_kg(model, config)
    windows = dict(tokenizer=model.tokenizer, window=config.window, seed=config.sample_seed)
    pool = corpus_windows(config.lm_corpus, n_tokens=config.lm_pool_tokens + config.val_lm_tokens, split="stats", **windows)
    n_train = config.lm_pool_tokens // config.window
    return SubnetworkData(
        **kg_parts,
        lm=pool[:n_train],
        val_lm=pool[n_train:],
        eval_lm=corpus_windows(config.lm_corpus, n_tokens=config.eval_lm_tokens, split="eval", **windows),
    )


def _split(known: KnowledgeSet, sizes: tuple[int, ...]) -> list[KnowledgeSet]:
    """Consecutive parts of a (seeded, already shuffled) set; the last part takes what is left."""
    parts, start = [], 0
    for i, n in enumerate(sizes):
        stop = len(known) if i == len(sizes) - 1 else start + n
        parts.append(type(known)(name=known.name, items=known.items[start:stop]))
        start = stop
    return parts


def _other_templates(known: KnowledgeSet, tokenizer) -> KGBatch:
    """Each fact on the training templates other than its chosen one (all were scored, none is trained on)."""
    batch = known.encode(tokenizer, template="train")
    chosen = [known.items[int(i)].template for i in batch.item_index]
    rows = [i for i, (t, c) in enumerate(zip(batch.templates, chosen)) if t != c]
    return batch[rows] if rows else known.encode(tokenizer)


def _sample(items: list, n: int, rng: random.Random) -> list:
    return items if len(items) <= n else rng.sample(items, n)

"""Knowledge-graph triplets for knowledge-critical subnetworks (Bayazit et al., arXiv 2310.03084).

The pipeline, in the order a user calls it::

    from circuitcut.data import kg
    triplets = kg.load_wordnet(relations=("IsA",))           # shipped WordNet 3.0 file, offline
    known = kg.known_triplets(model, triplets, top_k=10)     # what the model expresses
    target = kg.select_target("isa:animal", known, n=20)     # TargetKG: one coherent family
    control = kg.select_control(known, exclude=target, n=200, seed=0)   # ControlKG, disjoint
    batch = target.encode(model.tokenizer)                   # KGBatch: tokens, predict_pos, tail_token
    logits = model(batch.tokens)
    scores = batch.score(logits)                             # rank / log-prob of the tail

The package, one module a step: :mod:`.triplets` (triplets, relations, templates),
:mod:`.sources` (WordNet, ConceptNet), :mod:`.batch` (padded token batches), :mod:`.known`
(knowledge filtering, encoding under the chosen template), :mod:`.targets` (target specs,
TargetKG and ControlKG). Every user error raises :class:`KGError` (a ``ValueError``) naming the
problem and the fix.
"""

from circuitcut.data.kg.batch import KGBatch, TailScores, collate, tokenize_pairs
from circuitcut.data.kg.known import (
    KnownTriplet, TemplateScore, encode, known_triplets, score_pairs, score_triplets, tail_logits,
)
from circuitcut.data.kg.sources import load_conceptnet, load_wordnet
from circuitcut.data.kg.targets import (
    ControlKG, KnowledgeSet, TargetKG, TargetSpec, candidate_targets, check_disjoint, in_target, parse_spec,
    select_control, select_target, touches_family,
)
from circuitcut.data.kg.triplets import (
    RELATIONS, TEMPLATE_BY_NAME, TEMPLATES, WORDNET_RELATIONS, KGError, Template, Triplet, article, check_relation,
    get_template, render, templates_for, verbalize,
)

__all__ = [
    "KGError", "Triplet", "Template", "TEMPLATES", "RELATIONS", "WORDNET_RELATIONS", "templates_for", "get_template",
    "article", "verbalize", "render", "load_wordnet", "load_conceptnet", "TailScores", "KGBatch", "tokenize_pairs",
    "collate", "encode", "TemplateScore", "KnownTriplet", "score_pairs", "score_triplets", "known_triplets", "tail_logits",
    "KnowledgeSet", "TargetKG", "ControlKG", "TargetSpec", "parse_spec", "in_target", "touches_family",
    "select_target", "select_control", "check_disjoint", "candidate_targets",
]

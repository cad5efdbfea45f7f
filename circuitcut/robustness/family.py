"""Family generalisation: does a mask learned on a few facts remove the rest of their family?

From a finished subnetwork run folder: known facts of the target family about *other subjects* than
the facts the mask was learned on (same relation, other heads), and known facts of a sibling family
(another child of the target synset's parent, e.g. ``isa:plant`` beside ``isa:animal``). On each, the
remaining model's tail perplexity and top-10 accuracy next to the original model's and random
masks' of the same size per site.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass
from pathlib import Path

from transformer_lens.model_bridge import TransformerBridge

from circuitcut.data import kg
from circuitcut.data.kg import KGBatch
from circuitcut.data.wordnet import load_graph
from circuitcut.robustness.examples import Facts, subjects
from circuitcut.robustness.removal import Removal
from circuitcut.robustness.source import SubnetRun
from circuitcut.runs import write_json


@dataclass
class FamilyConfig:
    """Which facts the generalisation (and a subnetwork's relearning) uses."""

    n_facts: int = 40
    """At most this many known facts per family (seeded sample)."""
    candidates: int = 300
    """Facts per family scored for "known" (one forward pass per training template each)."""
    known_top_k: int = 10
    """A fact is known when the original model ranks its first tail token in this top k."""
    sibling: str | None = None
    """Sibling family spec (``isa:plant``); ``None``: the largest other child of the target synset's parent."""
    random_seeds: int = 3
    """Random masks with as many units per site as the learned one."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_facts", "candidates", "known_top_k", "random_seeds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")


def sibling_spec(target: str) -> str:
    """The largest other child of the target synset's first parent, as a spec of the same relation."""
    graph = load_graph()
    spec = kg.parse_spec(target, graph)
    if spec.synset is None:
        raise ValueError(f"Target {target!r} names no WordNet synset, so it has no sibling: pass sibling='isa:...'.")
    parents = graph.all_parents(spec.synset)
    siblings = [c for p in parents[:1] for c in graph.children(p) if c != spec.synset]
    if not siblings:
        raise ValueError(f"{graph.names[spec.synset]} has no sibling in WordNet: pass sibling='isa:...'.")
    best = max(siblings, key=lambda s: len(graph.descendants(s)))
    return f"{(spec.relation or 'isa').lower()}:{graph.names[best]}"


def known_family(
    model: TransformerBridge, spec: str, banned: set[str], config: FamilyConfig, isa_depth: int
) -> KGBatch:
    """Known facts of the family ``spec`` about subjects not in ``banned`` (lower case), encoded."""
    graph = load_graph()
    parsed = kg.parse_spec(spec, graph)
    family = [t for t in kg.load_wordnet(isa_depth=isa_depth) if kg.in_target(t, parsed, graph)
              and t.head.lower() not in banned]
    rng = random.Random(config.seed)
    candidates = family if len(family) <= config.candidates else rng.sample(family, config.candidates)
    known = kg.known_triplets(model, candidates, top_k=config.known_top_k)
    if not known:
        raise ValueError(
            f"None of {len(candidates)} facts of {spec!r} is known to the model (first tail token in its top "
            f"{config.known_top_k}): raise candidates or known_top_k, or choose another family."
        )
    known = known if len(known) <= config.n_facts else rng.sample(known, config.n_facts)
    return kg.encode(model.tokenizer, known)


def family_facts(model: TransformerBridge, run: SubnetRun, config: FamilyConfig) -> dict[str, Facts]:
    """The run's target facts, then known facts of its family and of a sibling family about other
    subjects than any of the run's evaluation facts (target and control)."""
    banned = set().union(*(subjects(batch) for batch in run.eval_kg.values()))
    sibling = config.sibling or sibling_spec(run.config.target)
    isa_depth = run.config.isa_depth
    return {
        "target": Facts(run.eval_kg["target"]),
        "family_heldout": Facts(known_family(model, run.config.target, banned, config, isa_depth)),
        f"sibling ({sibling})": Facts(known_family(model, sibling, banned, config, isa_depth)),
    }


def generalisation(
    model: TransformerBridge, run: SubnetRun, config: FamilyConfig | None = None,
    facts: dict[str, Facts] | None = None,
) -> dict:
    """Tail PPL and top-10 of the original, remaining and random-mask models on each family's facts."""
    config = config or FamilyConfig()
    facts = facts if facts is not None else family_facts(model, run, config)
    removals = [Removal("original", None), Removal("learned", run.mask)] + [
        Removal(f"random {s}", run.mask.random_like(s)) for s in range(config.random_seeds)]
    scores = {}
    for removal in removals:
        with removal.held(model, "hooks"):
            scores[removal.name] = {name: f.evaluate(model) for name, f in facts.items()}
    random_runs = [scores.pop(r.name) for r in removals[2:]]
    return {
        "target": run.config.target,
        "sparsity": run.mask.sparsity(),
        "facts": {name: f.batch.prompts for name, f in facts.items()},
        "original": scores["original"],
        "learned": scores["learned"],
        "random": {name: {metric: spread([r[name][metric] for r in random_runs]) for metric in ("top10", "ppl_tail")}
                   for name in facts},
    }


def spread(values: list[float]) -> dict:
    """Mean, standard deviation and the values, over random seeds."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def format_generalisation(report: dict) -> str:
    """One line per family: original, remaining and random-mask top-10 and tail PPL."""
    lines = [f"{report['target']} (sparsity {report['sparsity']:.1f} %)",
             f"{'facts':28s} {'n':>3s} | {'top10 orig':>10s} {'learned':>8s} {'random':>14s} | "
             f"{'PPL orig':>9s} {'learned':>10s} {'random':>18s}"]
    for name, orig in report["original"].items():
        learned, rand = report["learned"][name], report["random"][name]
        lines.append(
            f"{name:28s} {orig['n']:3d} | {orig['top10']:9.1f}% {learned['top10']:7.1f}% "
            f"{rand['top10']['mean']:6.1f}±{rand['top10']['std']:4.1f}% | {orig['ppl_tail']:9.2f} "
            f"{learned['ppl_tail']:10.2f} {rand['ppl_tail']['mean']:10.2f}±{rand['ppl_tail']['std']:6.2f}")
    return "\n".join(lines)


def save_generalisation(report: dict, folder: str | Path) -> Path:
    """Write ``generalisation.json`` into the run folder (atomically)."""
    path = Path(folder) / "generalisation.json"
    write_json(path, report)
    return path

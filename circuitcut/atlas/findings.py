"""What an atlas says across its targets: the comparisons, computed once with the model and shipped beside the
atlas (``comparisons-<granularity>-seed<S>.json.gz``), and the two questions they answer.

* Is the knowledge of nested families nested in the subnetworks? Containment of a child's subnetwork in its
  parent's (beside chance), and cross-criticality between a parent and its child in both directions.
* Do siblings share more than distant families? Jaccard and cross-criticality over pairs of each kind
  (:func:`pair_kinds`), and Spearman's rho of each against WordNet distance with an interval from resampling
  targets (:func:`~circuitcut.atlas.compare.rank_correlation`).

Cross-criticality is read as its *excess*: B's TargetKG dPPL without A's subnetwork, less the same without a
random mask of A's size per site; 0 when A's subnetwork matters to B no more than any weights of its size.
"""

from __future__ import annotations

import gzip
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from circuitcut.atlas.compare import containments, distances, jaccard_matrix, rank_correlation, targets_of
from circuitcut.atlas.hierarchy import parents
from circuitcut.atlas.store import AtlasError
from circuitcut.runs import atomic_path, provenance

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from circuitcut.atlas.atlas import Atlas



def comparisons_file(granularity: str, seed: int) -> str:
    """The file one granularity and seed's comparisons take in an atlas folder."""
    return f"comparisons-{granularity}-seed{seed}.json.gz"

_FRAMES = ("jaccard", "distance", "containment", "cross", "unions")


@dataclass
class Comparisons:
    """Every comparison of one granularity and seed's masks (frames as :mod:`~circuitcut.atlas.compare` and
    :mod:`~circuitcut.atlas.functional` return them)."""

    granularity: str
    seed: int
    jaccard: pd.DataFrame
    """Target x target overall Jaccard of the masks."""
    distance: pd.DataFrame
    """Target x target WordNet steps."""
    containment: pd.DataFrame
    """Each child among the targets in its parent: ``containment`` beside ``chance``."""
    cross: pd.DataFrame
    """One row per (``removed`` A, ``scored`` B): ``dppl``, ``top10``, ``top10_original``, ``dppl_random``."""
    unions: pd.DataFrame
    """Per sibling ``pair``, both families' dPPL and top-10 without each mask and without their union."""
    provenance: dict = field(default_factory=dict)
    contexts: dict[str, list[str]] = field(default_factory=dict)
    """Neuron masks only: per neuron in any target's mask (``blocks.L.mlp.hook_post:N``), the text around its
    strongest activations on prose, the peak token in brackets (:func:`neuron_contexts`)."""

    def excess(self) -> pd.DataFrame:
        """Target x target cross-criticality excess (rows: the subnetwork removed; columns: the facts scored)."""
        frame = self.cross.assign(excess=self.cross.dppl - self.cross.dppl_random)
        order = list(self.jaccard.index)
        return frame.pivot(index="removed", columns="scored", values="excess").loc[order, order]

    def save(self, folder: str | Path) -> Path:
        data = {"granularity": self.granularity, "seed": self.seed, "provenance": self.provenance,
                "contexts": self.contexts,
                **{name: getattr(self, name).to_dict(orient="split") for name in _FRAMES}}
        path = Path(folder) / comparisons_file(self.granularity, self.seed)
        with atomic_path(path) as tmp:
            tmp.write_bytes(gzip.compress(json.dumps(data, separators=(",", ":")).encode(), mtime=0))
        return path

    @classmethod
    def load(cls, folder: str | Path, granularity: str = "weight", seed: int = 0) -> Comparisons:
        path = Path(folder) / comparisons_file(granularity, seed)
        if not path.exists():
            raise AtlasError(f"{folder} holds no comparisons of {granularity} masks under seed {seed} ({path.name}): "
                             f"compute them with `circuitcut atlas compare --atlas {folder} --granularity "
                             f"{granularity} --seed {seed}` (needs the model).")
        data = json.loads(gzip.decompress(path.read_bytes()))
        frames = {name: pd.DataFrame(**data[name]) for name in _FRAMES}
        return cls(data["granularity"], data["seed"], provenance=data["provenance"],
                   contexts=data.get("contexts", {}), **frames)


def pair_kinds(targets: list[str]) -> dict[tuple[str, str], str]:
    """Each unordered pair of ``targets`` as ``nested`` (one lies in the other's family; the ancestor first),
    ``siblings`` (the same parent among the targets) or ``distant`` (neither, and no common ancestor among them);
    other pairs (cousins) are left out."""
    parent = parents(targets)

    def ancestors(t: str) -> list[str]:
        return [] if parent[t] is None else [parent[t], *ancestors(parent[t])]  # type: ignore[list-item]

    out = {}
    for i, a in enumerate(targets):
        for b in targets[i + 1:]:
            if a in ancestors(b):
                out[a, b] = "nested"
            elif b in ancestors(a):
                out[b, a] = "nested"  # the ancestor first
            elif parent[a] is not None and parent[a] == parent[b]:
                out[a, b] = "siblings"
            elif not set(ancestors(a)) & set(ancestors(b)):
                out[a, b] = "distant"
    return out


def compare_atlas(model: TransformerBridge, atlas: Atlas, granularity: str = "weight", seed: int = 0,
                  random_seeds: int = 1) -> Comparisons:
    """Every comparison of the atlas's ``granularity`` masks under ``seed``, with the model for the functional
    ones (cross-criticality of every pair; each sibling pair's union)."""
    from circuitcut.atlas.functional import cross_criticality, union_effect

    names = targets_of(atlas, None, granularity, seed)
    siblings = [pair for pair, kind in pair_kinds(names).items() if kind == "siblings"]
    unions = [union_effect(model, atlas, a, b, granularity, seed).assign(pair=f"{a} | {b}") for a, b in siblings]
    return Comparisons(
        granularity, seed, jaccard_matrix(atlas, names, granularity, seed), distances(names),
        containments(atlas, granularity, seed), cross_criticality(model, atlas, names, granularity, seed, random_seeds),
        pd.concat(unions, ignore_index=True) if unions else pd.DataFrame(), provenance(),
        neuron_contexts(model, atlas, names, seed) if granularity == "neuron" else {})


def neuron_contexts(model: TransformerBridge, atlas: Atlas, targets: list[str], seed: int = 0, k: int = 3,
                    tokens: int = 8192) -> dict[str, list[str]]:
    """For every neuron in any of ``targets``' neuron masks, its ``k`` strongest contexts (by magnitude, one per
    window) on ``tokens`` tokens of the prose corpus's evaluation split, keyed ``site:neuron``."""
    from circuitcut.contexts import many_contexts
    from circuitcut.data.corpora import corpus_windows
    from circuitcut.sites import hook_name, neuron_site

    chosen: dict[tuple, set[int]] = {}
    for target in targets:
        for site, removed in atlas.mask(target, "neuron", seed).removed.items():
            layer, kind = neuron_site(site)
            chosen.setdefault((kind, layer), set()).update(removed.flatten().nonzero().flatten().tolist())
    windows = corpus_windows("prose", model.tokenizer, n_tokens=tokens, window=64, split="eval", seed=0)
    found = many_contexts(model, windows, {site: sorted(n) for site, n in chosen.items() if n}, k=k, before=8,
                          after=2, rank_by="abs")
    return {f"{hook_name(kind, layer)}:{neuron}": [_snippet(c.tokens[row], c.offsets) for row in range(len(c.peaks))]
            for (kind, layer, neuron), c in found.items()}


def _snippet(tokens: list[str], offsets: list[int]) -> str:
    """One context's tokens as text, the peak token (offset 0) in brackets."""
    return "".join(f"[{t}]" if off == 0 else t for t, off in zip(tokens, offsets)).replace("·", " ")


def _by_kind(matrix: pd.DataFrame, kinds: dict[tuple[str, str], str]) -> dict[str, dict]:
    """Per pair kind, the mean, least and most of a target x target matrix over its pairs (both directions)."""
    out = {}
    for kind in ("nested", "siblings", "distant"):
        values = [v for (a, b), k in kinds.items() if k == kind for v in (matrix.loc[a, b], matrix.loc[b, a])]
        if values:
            out[kind] = {"pairs": len(values) // 2, "mean": statistics.fmean(values), "min": min(values),
                         "max": max(values)}
    return out


def findings(comparisons: Comparisons, n_boot: int = 2000) -> dict:
    """The numbers that answer the module's two questions (see the module docstring)."""
    names = list(comparisons.jaccard.index)
    kinds = pair_kinds(names)
    excess = comparisons.excess()
    nested = [{"parent": a, "child": b, "child_without_parent": excess.loc[a, b],
               "parent_without_child": excess.loc[b, a]} for (a, b), k in kinds.items() if k == "nested"]
    contained = comparisons.containment
    return {
        "targets": len(names),
        "containment": contained.to_dict(orient="records"),
        "containment_mean": float(contained.containment.mean()) if len(contained) else float("nan"),
        "containment_chance_mean": float(contained.chance.mean()) if len(contained) else float("nan"),
        "nested_excess": nested,
        "jaccard_by_kind": _by_kind(comparisons.jaccard, kinds),
        "excess_by_kind": _by_kind(excess, kinds),
        "jaccard_vs_distance": rank_correlation(comparisons.jaccard, comparisons.distance, n_boot),
        "excess_vs_distance": rank_correlation(excess, comparisons.distance, n_boot),
    }


def runs_markdown(atlas: Atlas, granularity: str = "weight", seed: int = 0) -> str:
    """The atlas's runs of one granularity and seed as a markdown table (the figures docs/results.md quotes)."""
    frame = atlas.to_frame()
    frame = frame[(frame.granularity == granularity) & (frame.seed == seed)]
    lines = ["| target | units (sparsity %) | TargetKG dPPL % (random) | top-10 after | never-seen ControlKG dPPL % "
             "(random) | ControlLM dPPL % | bounds |", "|---|---|---|---|---|---|---|"]
    for r in frame.to_dict("records"):
        pct = lambda key, fmt="+.1f": _figure(r.get(key, float("nan")), fmt)  # noqa: E731
        lines.append(f"| {r['target']} | {r['units']:,} ({r['sparsity']:.4f}) | {pct('dppl_target', '+,.1f')} "
                     f"({pct('dppl_random_target')}) | {pct('top10_target', '.0f')} % | {pct('dppl_control_new')} "
                     f"({pct('dppl_random_control_new')}) | {pct('dppl_lm')} | "
                     f"{'kept' if r['bounds_met'] else 'missed: ' + r['goals_missed']} |")
    return "\n".join(lines)


def seeds_markdown(frame: pd.DataFrame) -> str:
    """:func:`~circuitcut.atlas.compare.seed_agreement` as a markdown table (empty when no family has two seeds)."""
    if frame.empty:
        return ""
    lines = ["| target | units, seed A / B | shared | Jaccard (chance) | TargetKG dPPL %, seed A / B |",
             "|---|---|---|---|---|"]
    lines += [f"| {r.target} | {r.units_a:,} / {r.units_b:,} | {r.shared:,} | {r.jaccard:.3f} ({r.chance:.1e}) | "
              f"{r.dppl_a:+,.0f} / {r.dppl_b:+,.0f} |" for r in frame.itertuples()]
    return "\n".join(lines)


def _figure(value: float, fmt: str) -> str:
    """A table figure, ``-`` for NaN (a dataset the run did not report)."""
    return "-" if value != value else format(value, fmt)


def findings_markdown(found: dict) -> str:
    """:func:`findings` as the lines docs/results.md quotes."""
    lines = [f"Targets compared: {found['targets']}.", "",
             f"Containment of a child's subnetwork in its parent's: mean {found['containment_mean']:.3f} "
             f"(chance {found['containment_chance_mean']:.2e}).", ""]
    lines += [f"- {row['child']} in {row['parent']}: {row['shared']} of {row['child_units']} units "
              f"({row['containment']:.3f}; chance {row['chance']:.2e})" for row in found["containment"]]
    lines += ["", "| pair kind | pairs | Jaccard mean (min-max) | cross-criticality excess, pp: mean (min-max) |",
              "|---|---|---|---|"]
    for kind, j in found["jaccard_by_kind"].items():
        e = found["excess_by_kind"][kind]
        lines.append(f"| {kind} | {j['pairs']} | {j['mean']:.4f} ({j['min']:.4f}-{j['max']:.4f}) | "
                     f"{e['mean']:+.1f} ({e['min']:+.1f} to {e['max']:+.1f}) |")
    for name in ("jaccard_vs_distance", "excess_vs_distance"):
        r = found[name]
        lines.append(f"\n{name.replace('_', ' ')}: Spearman rho {r['rho']:+.2f} (95 % interval over targets "
                     f"{r['low']:+.2f} to {r['high']:+.2f}; {r['targets']} targets).")
    return "\n".join(lines)

"""Comparisons across an atlas's targets that need no model: how much two subnetworks share (Jaccard, per layer and
matrix kind), how much of a child family's subnetwork lies in its parent's (containment), how much one family's
masks under two seeds share (seed agreement), the WordNet distance of every pair, and whether a pairwise
similarity follows that distance (Spearman's rank correlation, with a bootstrap interval).

Every function returns a pandas DataFrame or a dict of plain numbers; a square matrix is a DataFrame indexed and
columned by target.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from circuitcut.atlas.hierarchy import distance_matrix, parents
from circuitcut.overlap import chance_jaccard, jaccard
from circuitcut.sites import parse_site

if TYPE_CHECKING:
    from circuitcut.atlas.atlas import Atlas
    from circuitcut.masks import Mask


def targets_of(atlas: Atlas, targets: Sequence[str] | None, granularity: str, seed: int) -> list[str]:
    """``targets`` by their atlas names (:meth:`~circuitcut.atlas.atlas.Atlas.target`), or every target with a run
    of this granularity and seed."""
    if targets is not None:
        return [atlas.target(t) for t in targets]
    return [t for t in atlas.targets if any(r["target"] == t and r["granularity"] == granularity and r["seed"] == seed
                                            for r in atlas.runs.values())]


def jaccard_by_site(a: Mask, b: Mask) -> pd.DataFrame:
    """One row per site (layer and matrix or neuron kind): units of each mask, shared units, the Jaccard
    (:meth:`~circuitcut.masks.Mask.jaccard`) and the level two random sets of these sizes reach."""
    per_site = a.jaccard(b)["per_site"]
    size_a, size_b = a.per_site(), b.per_site()
    rows = []
    for site, value in per_site.items():
        layer, part = parse_site(site)
        n_a, n_b, n = size_a[site]["subnetwork"], size_b[site]["subnetwork"], size_a[site]["units"]
        rows.append({"layer": layer, "part": part, "units_a": n_a, "units_b": n_b,
                     "shared": int((a.removed[site] & b.removed[site]).sum()), "jaccard": value,
                     "chance": chance_jaccard(n_a, n_b, n)})
    return pd.DataFrame(rows)


def jaccard_matrix(atlas: Atlas, targets: Sequence[str] | None = None, granularity: str = "weight",
                   seed: int = 0) -> pd.DataFrame:
    """The overall Jaccard of every pair of targets' masks (1 on the diagonal)."""
    names = targets_of(atlas, targets, granularity, seed)
    masks = {t: atlas.mask(t, granularity, seed) for t in names}
    values = [[1.0 if a == b else masks[a].jaccard(masks[b])["overall"] for b in names] for a in names]
    return pd.DataFrame(values, index=names, columns=names)


def _shared(a: Mask, b: Mask) -> int:
    """Units both masks remove (over the sites both cover)."""
    return sum(int((m & b.removed[site]).sum()) for site, m in a.removed.items() if site in b.removed)


def containment(child: Mask, parent: Mask) -> dict:
    """How much of ``child``'s subnetwork lies in ``parent``'s: |child & parent| / |child|, beside the share a
    random set of the child's size would have in it (|parent| / units)."""
    shared = _shared(child, parent)
    n_child, n_parent, n = child.n_removed(), parent.n_removed(), child.n_units()
    return {"child_units": n_child, "parent_units": n_parent, "shared": shared,
            "containment": shared / n_child if n_child else float("nan"), "chance": n_parent / n if n else float("nan")}


def containments(atlas: Atlas, granularity: str = "weight", seed: int = 0) -> pd.DataFrame:
    """:func:`containment` of every target in its parent among the atlas's targets (:func:`~circuitcut.atlas.hierarchy.parents`)."""
    names = targets_of(atlas, None, granularity, seed)
    rows = []
    for child, parent in parents(names).items():
        if parent is not None:
            found = containment(atlas.mask(child, granularity, seed), atlas.mask(parent, granularity, seed))
            rows.append({"child": child, "parent": parent, **found})
    return pd.DataFrame(rows, columns=["child", "parent", "child_units", "parent_units", "shared", "containment",
                                       "chance"])


def seed_agreement(atlas: Atlas, granularity: str = "weight", seeds: tuple[int, int] = (0, 1)) -> pd.DataFrame:
    """For every target with masks of both ``seeds``: how much the two masks share (how much of a subnetwork is
    seed noise), beside chance, and each mask's TargetKG dPPL. Columns: ``target``, ``units_a``, ``units_b``,
    ``shared``, ``jaccard``, ``chance``, ``dppl_a``, ``dppl_b`` (``a`` the first seed)."""
    held = {(r["target"], r["seed"]) for r in atlas.runs.values() if r["granularity"] == granularity}
    rows = []
    for target in atlas.targets:
        if not all((target, s) in held for s in seeds):
            continue
        a, b = (atlas.mask(target, granularity, s) for s in seeds)
        n_a, n_b = a.n_removed(), b.n_removed()
        shared = _shared(a, b)
        dppl = [atlas.run(target, granularity, s)["metrics"]["change"]["target"]["dppl"] for s in seeds]
        rows.append({"target": target, "units_a": n_a, "units_b": n_b, "shared": shared,
                     "jaccard": jaccard(n_a - shared, shared, n_b - shared), "chance": chance_jaccard(n_a, n_b, a.n_units()),
                     "dppl_a": dppl[0], "dppl_b": dppl[1]})
    return pd.DataFrame(rows, columns=["target", "units_a", "units_b", "shared", "jaccard", "chance", "dppl_a",
                                       "dppl_b"])


def distances(targets: Sequence[str]) -> pd.DataFrame:
    """:func:`~circuitcut.atlas.hierarchy.wordnet_distance` of every pair of ``targets``."""
    return pd.DataFrame(distance_matrix(targets), index=list(targets), columns=list(targets))


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 3:  # a resample that drew one or two targets only
        return float("nan")
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _pairs(similarity: pd.DataFrame, distance: pd.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both matrices' values over every ordered pair of the ``rows`` (indices) that are two different targets."""
    i, j = np.meshgrid(rows, rows, indexing="ij")
    keep = i != j
    return similarity.to_numpy()[i[keep], j[keep]], distance.to_numpy()[i[keep], j[keep]]


def rank_correlation(similarity: pd.DataFrame, distance: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> dict:
    """Spearman's rho between a pairwise similarity (Jaccard, cross-criticality) and a distance over the same
    targets' ordered pairs (off the diagonal), with a 95 % bootstrap interval.

    The bootstrap resamples targets, not pairs: pairs that share a target are not independent, so resampling
    them would make the interval too narrow. A negative rho: the closer two families, the more alike."""
    if list(similarity.index) != list(distance.index) or list(similarity.columns) != list(distance.columns):
        distance = distance.loc[similarity.index, similarity.columns]
    n = len(similarity)
    rho = _spearman(*_pairs(similarity, distance, np.arange(n)))
    gen = np.random.default_rng(seed)
    boot = np.array([_spearman(*_pairs(similarity, distance, gen.integers(0, n, n))) for _ in range(n_boot)])
    boot = boot[~np.isnan(boot)]
    low, high = np.quantile(boot, [0.025, 0.975]) if len(boot) else (float("nan"), float("nan"))
    return {"rho": rho, "low": float(low), "high": float(high), "targets": n, "pairs": n * (n - 1)}

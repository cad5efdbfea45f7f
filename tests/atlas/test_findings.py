"""The questions an atlas answers across targets: pair kinds from the hierarchy, and the findings' numbers."""

from __future__ import annotations

import pandas as pd
import pytest

from circuitcut.atlas.findings import Comparisons, findings, pair_kinds

TARGETS = ["isa:animal.n.01", "isa:mammal.n.01", "isa:bird.n.01", "isa:dog.n.01", "isa:color.n.01"]


def test_pairs_are_nested_siblings_or_distant_by_the_hierarchy():
    kinds = pair_kinds(TARGETS)
    assert kinds["isa:animal.n.01", "isa:dog.n.01"] == "nested"  # a grandchild, through mammal
    assert kinds["isa:mammal.n.01", "isa:bird.n.01"] == "siblings"
    assert kinds["isa:animal.n.01", "isa:color.n.01"] == "distant"
    assert ("isa:bird.n.01", "isa:dog.n.01") not in kinds  # cousins: neither nested, siblings nor distant


def _matrix(value) -> pd.DataFrame:
    return pd.DataFrame([[value(a, b) for b in TARGETS] for a in TARGETS], index=TARGETS, columns=TARGETS)


def test_findings_read_each_kind_of_pair_from_the_matrices(tmp_path):
    kinds = pair_kinds(TARGETS)
    level = {"nested": 0.3, "siblings": 0.2, "distant": 0.01}
    jaccard = _matrix(lambda a, b: 1.0 if a == b else level.get(kinds.get((a, b)) or kinds.get((b, a)), 0.1))
    cross = pd.DataFrame([{"removed": a, "scored": b, "dppl": 100 * jaccard.loc[a, b], "top10": 0.0,
                           "top10_original": 100.0, "dppl_random": 1.0} for a in TARGETS for b in TARGETS])
    containment = pd.DataFrame([{"child": "isa:mammal.n.01", "parent": "isa:animal.n.01", "child_units": 10,
                                 "parent_units": 20, "shared": 4, "containment": 0.4, "chance": 1e-6}])
    distance = _matrix(lambda a, b: 0.0 if a == b else 1.0 + 5 * (level.get(kinds.get((a, b)) or kinds.get((b, a)), 0.1) < 0.2))
    comparisons = Comparisons("weight", 0, jaccard, distance, containment, cross, pd.DataFrame())
    found = findings(comparisons, n_boot=200)
    assert found["jaccard_by_kind"]["siblings"]["mean"] == pytest.approx(0.2)
    assert found["jaccard_by_kind"]["distant"]["pairs"] == 4  # color with each of the others
    assert found["excess_by_kind"]["nested"]["mean"] == pytest.approx(29.0)
    assert found["containment_mean"] == pytest.approx(0.4)
    assert found["jaccard_vs_distance"]["rho"] < -0.5  # built so that the nearer share more
    comparisons.save(tmp_path)
    again = Comparisons.load(tmp_path)
    pd.testing.assert_frame_equal(again.excess(), comparisons.excess())

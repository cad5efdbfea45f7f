"""Target and control knowledge sets: ancestry, errors that name the fix, candidate targets."""

from __future__ import annotations

import warnings

import pytest

from circuitcut.data import kg
from circuitcut.data.wordnet import load_graph
from kg_helpers import known


def test_select_target_by_ancestry(wordnet):
    g = load_graph()
    pool = [known(t) for t in kg.load_wordnet(min_count=1)]
    target = kg.select_target("isa:animal", pool)
    animal = g.find("animal")[0]
    assert len(target) > 50 and target.spec.synset == animal
    assert all(k.triplet.relation == "IsA" and g.is_under(k.triplet.tail_id, animal) for k in target)
    assert {"dog", "bird"} & {k.triplet.tail for k in target}
    small = kg.select_target("isa:animal", pool, n=20, seed=1)
    assert len(small) == 20 and set(small.triplets) <= set(target.triplets)
    assert small.triplets == kg.select_target("isa:animal", pool, n=20, seed=1).triplets
    # synset names, offsets, other relations, whole relations, exact tails
    assert kg.select_target("isa:animal.n.01", pool).triplets == target.triplets
    assert kg.select_target("isa:00015388", pool).triplets == target.triplets
    assert all(k.triplet.relation == "PartOf" for k in kg.select_target("relation:PartOf", pool))
    assert {k.triplet.tail for k in kg.select_target("tail:animal", pool)} == {"animal"}
    # a ConceptNet-style triplet (no synset ids) is placed by its words
    assert kg.in_target(kg.Triplet("poodle", "IsA", "dog"), "isa:animal")

    control = kg.select_control(pool, exclude=target, n=100, seed=0)
    assert len(control) == 100
    kg.check_disjoint(target, control)
    words = {w for t in target.triplets for w in (t.head, t.tail)}
    for k in control:
        t = k.triplet
        assert t not in set(target.triplets) and t.head not in words and t.tail not in words
        assert not kg.touches_family(t, "isa:animal")
    rel_control = kg.select_control(pool, exclude="relation:PartOf", n=50)
    assert all(k.triplet.relation != "PartOf" for k in rel_control)


def test_selection_errors():
    pool = [known(kg.Triplet("dog", "IsA", "canine", "wordnet", "02084071", "02083346")),
            known(kg.Triplet("oak", "IsA", "tree", "wordnet", "12268918", "13104059"))]
    with pytest.raises(kg.KGError, match="holds 0 of the 2 scored facts"):
        kg.select_target("isa:building.n.01", pool)
    with pytest.raises(kg.KGError, match="need 5") as err:
        kg.select_target("isa:animal", pool, min_n=5)
    # The fix is given as the command-line flags that change it (it named Python calls only).
    assert "a broader --target" in str(err.value) and "--min-target 1" in str(err.value)
    assert "--n-candidates N" in str(err.value)
    with pytest.raises(kg.KGError, match=r"\(with enough known facts here: isa:.* \(2\)"):
        kg.select_target("isa:building.n.01", pool, min_n=2)
    with pytest.raises(kg.KGError, match="Unknown WordNet synset 'animl'.*animal"):
        kg.select_target("isa:animl", pool)
    with pytest.raises(kg.KGError, match="Unknown relation"):
        kg.select_target("relation:Eats", pool)
    with pytest.raises(kg.KGError, match="Unknown relation"):
        kg.select_target("eats:animal", pool)
    with pytest.raises(kg.KGError, match="Bad target spec"):
        kg.select_target("animal", pool)
    with pytest.warns(UserWarning, match="plant.n.01.*plant.n.02"):
        kg.parse_spec("isa:plant")
    target = kg.select_target("isa:animal", pool)
    overlapping = kg.ControlKG("mine", list(pool))
    with pytest.raises(kg.KGError, match="share 1 triplets"):
        kg.check_disjoint(target, overlapping)
    with pytest.raises(kg.KGError, match="No control triplets left"):
        kg.select_control(pool[:1], exclude=target)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(kg.select_control(pool, exclude=target, n=10)) == 1
    assert any("Only 1 control" in str(w.message) for w in caught)
    with pytest.raises(kg.KGError, match="no chosen template"):
        kg.encode(_FakeTokenizer(), [pool[0].triplet])


class _FakeTokenizer:
    def convert_tokens_to_ids(self, *_):  # marks it as a tokenizer
        return 0


def test_candidate_targets():
    pool = [known(t) for t in kg.load_wordnet(("IsA",), min_count=3)]
    cands = dict(kg.candidate_targets(pool, min_n=10, max_n=40))
    assert cands and all(10 <= c <= 40 for c in cands.values())
    assert all(spec.startswith("isa:") for spec in cands)
    spec, count = next(iter(cands.items()))
    assert len(kg.select_target(spec, pool)) == count

"""Triplet sources: the shipped WordNet file and the ConceptNet loader."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from circuitcut.data import kg
from circuitcut.data.wordnet import LICENSE_FILE, shipped_path
from kg_helpers import find


def test_wordnet_file_and_relations(wordnet):
    path = shipped_path()
    assert path.exists() and path.stat().st_size < 3_000_000
    assert "Princeton University" in (path.parent / LICENSE_FILE).read_text()
    counts = {r: sum(t.relation == r for t in wordnet) for r in kg.WORDNET_RELATIONS}
    assert counts["IsA"] > 50_000 and counts["PartOf"] > 5_000
    assert counts["MemberOf"] > 5_000 and counts["MadeOf"] > 300
    # directions
    assert find(wordnet, "dog", "IsA", "canine")
    assert find(wordnet, "Paris", "IsA", "national capital")  # instance hypernym
    assert find(wordnet, "finger", "PartOf", "hand") and not find(wordnet, "hand", "PartOf", "finger")
    assert find(wordnet, "bird", "MemberOf", "flock")
    assert find(wordnet, "brick", "MadeOf", "clay") and find(wordnet, "water", "MadeOf", "hydrogen")
    dog = find(wordnet, "dog", "IsA", "canine")
    assert (dog.head_id, dog.source) == ("02084071", "wordnet")
    assert all(len(t.head.split()) <= 2 and "_" not in t.head for t in wordnet)
    only_isa = kg.load_wordnet(("IsA",), isa_depth=3, min_count=3)
    assert find(only_isa, "dog", "IsA", "animal") and {t.relation for t in only_isa} == {"IsA"}
    with pytest.raises(kg.KGError, match="WordNet has no"):
        kg.load_wordnet(("UsedFor",))


def test_conceptnet_loader(tmp_path: Path):
    meta = json.dumps({"dataset": "/d/conceptnet/4/en", "weight": 2.0})
    weak = json.dumps({"weight": 0.5})
    rows = [
        ("/a/[/r/IsA/,/c/en/dog/n/,/c/en/animal/]", "/r/IsA", "/c/en/dog/n", "/c/en/animal", meta),
        ("/a/[/r/IsA/,/c/fr/chien/,/c/fr/animal/]", "/r/IsA", "/c/fr/chien", "/c/fr/animal", meta),
        ("/a/[/r/IsA/,/c/en/dog/,/c/fr/animal/]", "/r/IsA", "/c/en/dog", "/c/fr/animal", meta),
        ("/a/[/r/PartOf/,/c/en/wheel/,/c/en/car/]", "/r/PartOf", "/c/en/wheel", "/c/en/car", meta),
        ("/a/[/r/HasA/,/c/en/bird/,/c/en/feather/]", "/r/HasA", "/c/en/bird", "/c/en/feather", meta),
        ("/a/[/r/MadeOf/,/c/en/table/,/c/en/wood/]", "/r/MadeOf", "/c/en/table", "/c/en/wood", weak),
        ("/a/[/r/UsedFor/,/c/en/knife/,/c/en/cut_bread/]", "/r/UsedFor", "/c/en/knife", "/c/en/cut_bread/v", meta),
        ("/a/[/r/RelatedTo/,/c/en/dog/,/c/en/bone/]", "/r/RelatedTo", "/c/en/dog", "/c/en/bone", meta),
    ]
    path = tmp_path / "assertions.csv"
    path.write_text("".join("\t".join(r) + "\n" for r in rows))
    got = kg.load_conceptnet(path)
    assert [(t.head, t.relation, t.tail) for t in got] == [
        ("dog", "IsA", "animal"), ("wheel", "PartOf", "car"), ("feather", "PartOf", "bird"),
        ("table", "MadeOf", "wood"), ("knife", "UsedFor", "cut bread"),
    ]
    assert got[0].source == "conceptnet" and got[0].head_id == "/c/en/dog/n"
    assert kg.verbalize(got[-1], "usedfor_used") == ("A knife is used for", " cut bread")
    assert len(kg.load_conceptnet(path, min_weight=1.0)) == 4
    assert [t.relation for t in kg.load_conceptnet(path, relations=["IsA"])] == ["IsA"]
    gz = tmp_path / "assertions.csv.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert kg.load_conceptnet(gz) == got
    with pytest.raises(kg.KGError, match="Unknown relation"):
        kg.load_conceptnet(path, relations=["Eats"])
    bad = tmp_path / "bad.csv"
    bad.write_text("dog,IsA,animal\n")
    with pytest.raises(kg.KGError, match="not a ConceptNet assertions line"):
        kg.load_conceptnet(bad)

"""The runtime WordNet graph and the builder script's parser."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from circuitcut.data.wordnet import load_graph


def _builder():
    """scripts/build_wordnet.py, a data builder outside the package (no algorithm of circuitcut lives in scripts/)."""
    path = Path(__file__).resolve().parents[2] / "scripts" / "build_wordnet.py"
    spec = importlib.util.spec_from_file_location("build_wordnet", path)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # its dataclasses look it up
    spec.loader.exec_module(module)
    return module


def test_wordnet_graph_ancestry():
    g = load_graph()
    dog, animal = g.find("dog")[0], g.find("animal")[0]
    assert g.names[dog] == "dog.n.01" and g.lemma(g.find("domestic animal")[0]) == "domestic animal"
    assert g.is_under(dog, animal) and not g.is_under(animal, dog)
    assert dog in g.descendants(animal)
    assert g.find("building.n.01") == g.find("02913152") == [g.find("building")[0]]
    assert g.count(dog) > g.count(g.find("canine")[0])


def test_parse_data_line():
    parse_data_line = _builder().parse_data_line
    line = ("02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 003 @ 02083346 n 0000 "
            "#m 02083863 n 0000 %p 02158846 n 0000 | a member of the genus Canis  ")
    rec = parse_data_line(line)
    assert rec.lemmas == ("dog", "domestic_dog", "Canis_familiaris")
    assert rec.targets("@") == ["02083346"] and rec.targets("%p") == ["02158846"]
    assert rec.gloss == "a member of the genus Canis"
    assert parse_data_line("  1 This software and database is being provided") is None

"""Triplets and templates: articles, verbalization, held-out templates."""

from __future__ import annotations

import pytest

from circuitcut.data import kg


def test_article():
    assert [kg.article(w) for w in ("dog", "apple", "hour", "unicorn", "umbrella", "European", "one")] == [
        "a", "an", "an", "a", "an", "", "a",
    ]
    assert kg.article("European", proper=False) == "a"
    assert kg.article("Paris") == ""


def test_verbalize_and_heldout():
    dog = kg.Triplet("dog", "IsA", "animal")
    assert kg.verbalize(dog, "isa_kind") == ("A dog is a kind of", " animal")
    assert kg.verbalize(dog, "isa_article") == ("A dog is an", " animal")
    assert kg.render(kg.Triplet("apple", "IsA", "fruit"), "isa_type") == "An apple is a type of fruit"
    assert kg.verbalize(kg.Triplet("wheel", "PartOf", "car"), "partof_part") == ("A wheel is part of a", " car")
    assert kg.verbalize(kg.Triplet("player", "MemberOf", "team"), "memberof_member") == (
        "A player is a member of a", " team")
    assert kg.verbalize(kg.Triplet("table", "MadeOf", "wood"), "madeof_made") == ("A table is made of", " wood")
    # proper nouns (WordNet instances) take no article; demonyms do
    paris = kg.Triplet("Paris", "IsA", "city", head_id="08932568")
    assert kg.verbalize(paris, "isa_article") == ("Paris is a", " city")
    assert kg.verbalize(kg.Triplet("European", "IsA", "person", head_id="09686536"), "isa_kind")[0] == (
        "A European is a kind of")
    for relation in kg.RELATIONS:
        train, held = kg.templates_for(relation), kg.templates_for(relation, "heldout")
        assert train and held and not set(train) & set(held)
        assert all(t.relation == relation for t in train + held)
    assert "isa_type" in {t.name for t in kg.templates_for("IsA", "heldout")}
    validation = kg.templates_for("IsA", "validation")
    assert {t.name for t in validation} == {"isa_sort", "isa_classified"}
    assert not set(validation) & (set(kg.templates_for("IsA")) | set(kg.templates_for("IsA", "heldout")))
    assert len(kg.templates_for("IsA", None)) == 6
    with pytest.raises(kg.KGError, match="has role 'test'"):
        kg.Template("isa_x", "IsA", "{a} {head} is {tail}", "test")
    with pytest.raises(kg.KGError, match="verbalizes PartOf"):
        kg.verbalize(dog, "partof_part")
    with pytest.raises(kg.KGError, match="Unknown template"):
        kg.verbalize(dog, "isa_kindd")
    with pytest.raises(kg.KGError, match="Unknown relation"):
        kg.Triplet("dog", "Eats", "meat")
    assert kg.Triplet("dog", "isa", "animal").relation == "IsA"
    # identity is the words, not the provenance
    assert kg.Triplet("dog", "IsA", "animal", "wordnet", "1", "2") == dog


def test_tail_named_in_head():
    named = [("green frog", "frog"), ("air-to-ground missile", "missile"), ("chicken cacciatore", "chicken casserole"),
             ("canned food", "foodstuff"), ("corn dab", "cornbread")]
    unnamed = [("frog", "amphibian"), ("Asian crocodile", "crocodilian reptile"), ("a cat", "a pet")]
    assert all(kg.Triplet(h, "IsA", t).tail_named_in_head for h, t in named)
    assert not any(kg.Triplet(h, "IsA", t).tail_named_in_head for h, t in unnamed)  # "a" is no content word

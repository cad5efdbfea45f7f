"""Knowledge-graph data layer: templates, WordNet file, ConceptNet loader, filtering, targets."""

from __future__ import annotations

import gzip
import json
import warnings
from pathlib import Path

import pytest
import torch

from circuitcut.data import kg
from build_wordnet import parse_data_line
from circuitcut.data.wordnet import LICENSE_FILE, load_graph, shipped_path


def known(triplet: kg.Triplet, rank: int = 1) -> kg.KnownTriplet:
    """A KnownTriplet without a model (for selection tests)."""
    template = kg.templates_for(triplet.relation)[0].name
    return kg.KnownTriplet(triplet, template, rank, -0.5, -0.5, rank <= 10)


@pytest.fixture(scope="module")
def wordnet() -> list[kg.Triplet]:
    return kg.load_wordnet()


def find(triplets, head, relation, tail):
    return next((t for t in triplets if (t.head, t.relation, t.tail) == (head, relation, tail)), None)


# ---------------------------------------------------------------------------- templates


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
        train, held = kg.templates_for(relation), kg.templates_for(relation, heldout=True)
        assert train and held and not set(train) & set(held)
        assert all(t.relation == relation for t in train + held)
    assert "isa_type" in {t.name for t in kg.templates_for("IsA", heldout=True)}
    with pytest.raises(kg.KGError, match="verbalizes PartOf"):
        kg.verbalize(dog, "partof_part")
    with pytest.raises(kg.KGError, match="Unknown template"):
        kg.verbalize(dog, "isa_kindd")
    with pytest.raises(kg.KGError, match="Unknown relation"):
        kg.Triplet("dog", "Eats", "meat")
    assert kg.Triplet("dog", "isa", "animal").relation == "IsA"
    # identity is the words, not the provenance
    assert kg.Triplet("dog", "IsA", "animal", "wordnet", "1", "2") == dog


# ---------------------------------------------------------------------------- WordNet


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


def test_wordnet_graph_ancestry():
    g = load_graph()
    dog, animal = g.find("dog")[0], g.find("animal")[0]
    assert g.names[dog] == "dog.n.01" and g.lemma(g.find("domestic animal")[0]) == "domestic animal"
    assert g.is_under(dog, animal) and not g.is_under(animal, dog)
    assert dog in g.descendants(animal)
    assert g.find("building.n.01") == g.find("02913152") == [g.find("building")[0]]
    assert g.count(dog) > g.count(g.find("canine")[0])


def test_parse_data_line():
    line = ("02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 003 @ 02083346 n 0000 "
            "#m 02083863 n 0000 %p 02158846 n 0000 | a member of the genus Canis  ")
    rec = parse_data_line(line)
    assert rec.lemmas == ("dog", "domestic_dog", "Canis_familiaris")
    assert rec.targets("@") == ["02083346"] and rec.targets("%p") == ["02158846"]
    assert rec.gloss == "a member of the genus Canis"
    assert parse_data_line("  1 This software and database is being provided") is None


# ---------------------------------------------------------------------------- ConceptNet


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


# ---------------------------------------------------------------------------- targets and controls


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


# ---------------------------------------------------------------------------- models


FACTS = [
    kg.Triplet("dog", "IsA", "animal"),
    kg.Triplet("apple", "IsA", "fruit"),
    kg.Triplet("hammer", "IsA", "tool"),
    kg.Triplet("wheel", "PartOf", "car"),
    kg.Triplet("table", "MadeOf", "wood"),
    kg.Triplet("player", "MemberOf", "team"),
    kg.Triplet("hammer", "IsA", "pitchfork"),  # multi-token, false
    kg.Triplet("elephant", "IsA", "pachyderm"),
]


def test_tokenization_matches_joint_text(tiny_model):
    tok = tiny_model.tokenizer
    for fact in FACTS:
        for template in kg.templates_for(fact.relation, heldout=None):
            prompt, cont = kg.verbalize(fact, template)
            (p, c), = kg.tokenize_pairs(tok, [prompt], [cont])
            assert p + c == tok(prompt + cont)["input_ids"]


def test_encode_and_filter_tiny(tiny_model):
    tok = tiny_model.tokenizer
    scored = kg.score_triplets(tiny_model, FACTS, top_k=10, batch_size=8, heldout=True)  # 4 padded batches
    assert len(scored) == len(FACTS)
    for k in scored:
        train = [s for s in k.scores if not s.heldout]
        assert k.template == min(train, key=lambda s: s.perplexity).template
        assert k.known == (k.rank <= 10) and 1 <= k.rank <= tok.vocab_size + 1000
        assert {s.template for s in k.heldout_scores} == {t.name for t in kg.templates_for(k.triplet.relation, heldout=True)}
    everything = kg.known_triplets(tiny_model, FACTS, top_k=49152)
    assert [k.triplet for k in everything] == FACTS
    assert len(kg.known_triplets(tiny_model, FACTS, top_k=1)) < len(FACTS)  # a random model knows ~nothing

    batch = kg.encode(tiny_model, scored)
    assert batch.tokens.shape[0] == len(FACTS) and batch.tokens.dtype == torch.long
    for i, k in enumerate(scored):
        p = int(batch.predict_pos[i])
        prompt_ids, tail_ids = kg.tokenize_pairs(tok, [k.prompt], [k.continuation])[0]
        assert batch.tokens[i, : p + 1].tolist() == prompt_ids
        assert int(batch.tail_token[i]) == tail_ids[0] == int(batch.tokens[i, p + 1])
        assert batch.tail_tokens[i][batch.tail_mask[i]].tolist() == tail_ids
    assert batch.tail_mask.sum(-1).max() > 1  # a multi-token tail is in there
    held = kg.encode(tok, scored, template="heldout")
    assert len(held) == sum(len(kg.templates_for(t.relation, heldout=True)) for t in FACTS)
    assert set(held.item_index.tolist()) == set(range(len(FACTS)))

    # padded batch == one row at a time, and == the filter's own numbers
    with torch.inference_mode():
        logits = tiny_model(batch.tokens)
        together = batch.score(logits)
        longest = int(batch.attention_mask.sum(-1).argmax())
        multi = int(batch.tail_mask.sum(-1).argmax())
        for i in sorted({0, longest, multi}):
            row = batch[[i]]
            alone = row.score(tiny_model(row.tokens))
            assert int(alone.rank[0]) == int(together.rank[0 + i])
            assert torch.allclose(alone.tail_logprob, together.tail_logprob[i : i + 1], atol=1e-4)
    assert torch.allclose(together.logprob, torch.tensor([k.logprob for k in scored]), atol=1e-4)
    assert torch.allclose(together.perplexity, torch.tensor([k.perplexity for k in scored]), rtol=1e-3)
    nll = batch.tail_nll(tiny_model(batch.tokens))  # differentiable loss path
    assert nll.shape == (len(FACTS),) and torch.allclose(-nll, together.tail_logprob, atol=1e-4)


@pytest.mark.real
def test_smollm2_knows_simple_facts(smollm2):
    facts = [kg.Triplet("dog", "IsA", "animal"), kg.Triplet("apple", "IsA", "fruit"),
             kg.Triplet("hammer", "IsA", "pitchfork")]
    scored = kg.score_triplets(smollm2, facts, top_k=10)
    assert [k.known for k in scored] == [True, True, False]
    dog = scored[0]
    assert dog.rank <= 10 and dog.template in {t.name for t in kg.templates_for("IsA")}
    assert next(s for s in dog.scores if s.template == "isa_kind").rank <= 10  # "A dog is a kind of" -> " animal"

"""Encoding and knowledge filtering on a model: tokenization, padded batches, known facts."""

from __future__ import annotations

import pytest
import torch

from circuitcut.data import kg


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
        for template in kg.templates_for(fact.relation, None):
            prompt, cont = kg.verbalize(fact, template)
            (p, c), = kg.tokenize_pairs(tok, [prompt], [cont])
            assert p + c == tok(prompt + cont)["input_ids"]


def test_encode_and_filter_tiny(tiny_model):
    tok = tiny_model.tokenizer
    scored = kg.score_triplets(tiny_model, FACTS, top_k=10, batch_size=8, heldout=True)  # 4 padded batches
    assert len(scored) == len(FACTS)
    for k in scored:
        train = [s for s in k.scores if s.role == "train"]
        assert k.template == min(train, key=lambda s: s.perplexity).template
        assert k.known == (k.rank <= 10) and 1 <= k.rank <= tok.vocab_size + 1000
        assert {s.template for s in k.heldout_scores} == {t.name for t in kg.templates_for(k.triplet.relation, "heldout")}
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
    assert len(held) == sum(len(kg.templates_for(t.relation, "heldout")) for t in FACTS)
    assert set(held.item_index.tolist()) == set(range(len(FACTS)))
    val = kg.encode(tok, scored, template="validation")  # only IsA has validation paraphrases
    assert set(val.templates) == {"isa_sort", "isa_classified"}
    assert len(val) == 2 * sum(t.relation == "IsA" for t in FACTS)

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


def test_tail_logits_equal_every_positions_logits(tiny_model):
    """Unembedding the tail positions only scores and differentiates as the whole sequence's logits do."""
    batch = kg.encode(tiny_model, kg.score_triplets(tiny_model, FACTS, top_k=10))
    assert batch.tail_mask.sum(-1).max() > 1 and len(set(batch.attention_mask.sum(-1).tolist())) > 1
    full = tiny_model(batch.tokens[:, :-1])
    tail = kg.tail_logits(tiny_model, batch)
    assert tail.shape == (len(batch), batch.tail_tokens.shape[1], full.shape[-1])
    a, b = batch.score(full), batch.score(tail, at_tail=True)
    assert torch.equal(a.rank, b.rank)
    assert torch.allclose(a.logprob, b.logprob, atol=1e-5) and torch.allclose(a.tail_logprob, b.tail_logprob, atol=1e-5)
    scored = kg.score_pairs(tiny_model, batch, batch_size=3)  # sub-batches sorted by length, put back in order
    assert torch.equal(scored.rank, a.rank) and torch.allclose(scored.tail_logprob, a.tail_logprob, atol=1e-5)
    first = kg.tail_logits(tiny_model, batch, width=1)[:, 0]
    assert torch.allclose(first, batch.predict_logits(full), atol=1e-5)

    params = [p for p in tiny_model.parameters() if p.dim() == 2]
    grads_full = torch.autograd.grad(batch.tail_nll(tiny_model(batch.tokens[:, :-1])).sum(), params)
    grads_tail = torch.autograd.grad(batch.tail_nll(kg.tail_logits(tiny_model, batch), at_tail=True).sum(), params)
    assert all(g.abs().sum() > 0 for g in grads_full)
    for g, h in zip(grads_full, grads_tail):
        assert torch.allclose(g, h, atol=1e-5)


@pytest.mark.real
def test_smollm2_knows_simple_facts(smollm2):
    facts = [kg.Triplet("dog", "IsA", "animal"), kg.Triplet("apple", "IsA", "fruit"),
             kg.Triplet("hammer", "IsA", "pitchfork")]
    scored = kg.score_triplets(smollm2, facts, top_k=10)
    assert [k.known for k in scored] == [True, True, False]
    dog = scored[0]
    assert dog.rank <= 10 and dog.template in {t.name for t in kg.templates_for("IsA")}
    assert next(s for s in dog.scores if s.template == "isa_kind").rank <= 10  # "A dog is a kind of" -> " animal"

"""Loss terms against direct computations; the suppression hinge; the reference cache."""

from __future__ import annotations

import pytest
import torch

from circuitcut.subnetwork.objective import (
    kg_logits, kl_from_uniform, kl_to_reference, margin, reference, suppression, tail_rank, topk_kl, unlikelihood,
)
from subnetwork_helpers import tiny_data


def test_loss_terms_match_direct_computation():
    torch.manual_seed(0)
    logits = torch.randn(3, 11)
    p = logits.softmax(-1)
    uniform = torch.full((11,), 1 / 11)
    direct = (uniform * (uniform.log() - p.log())).sum(-1)
    assert torch.allclose(kl_from_uniform(logits), direct, atol=1e-6)
    assert kl_from_uniform(torch.zeros(2, 11)).abs().max() < 1e-6

    ref = torch.randn(3, 11).log_softmax(-1)
    direct = (ref.exp() * (ref - p.log())).sum(-1).mean()
    assert torch.allclose(kl_to_reference(ref, logits), direct, atol=1e-6)

    # top-k KL: the KL of the distributions coarse-grained to {k tokens, rest}; exact when k = vocab
    top = ref.topk(4, dim=-1)
    q = p.gather(-1, top.indices)
    ref_rest, q_rest = 1 - top.values.exp().sum(-1), 1 - q.sum(-1)
    direct = ((top.values.exp() * (top.values - q.log())).sum(-1) + ref_rest * (ref_rest.log() - q_rest.log())).mean()
    assert torch.allclose(topk_kl(top.indices, top.values, logits), direct, atol=1e-5)
    full = ref.topk(11, dim=-1)
    assert torch.allclose(topk_kl(full.indices, full.values, logits), kl_to_reference(ref, logits), atol=1e-4)
    assert topk_kl(top.indices, top.values, logits) <= kl_to_reference(ref, logits) + 1e-6

    tail = torch.tensor([0, 5, 10])
    p_tail = p[torch.arange(3), tail]
    assert torch.allclose(unlikelihood(logits, tail), -torch.log1p(-p_tail), atol=1e-6)
    assert tail_rank(logits, tail).tolist() == [int((logits[i] > logits[i, t]).sum()) + 1 for i, t in enumerate(tail)]
    for i, t in enumerate(tail.tolist()):
        kth = sorted((logits[i, v].item() for v in range(11) if v != t), reverse=True)[2]
        assert margin(logits, tail, 3)[i].item() == pytest.approx(max(0.0, logits[i, t].item() - kth + 1), abs=1e-6)


def test_unlikelihood_keeps_its_gradient_when_the_tail_is_certain():
    logits = torch.zeros(1, 1000)
    logits[0, 7] = 40.0  # p(tail) rounds to 1 in float32
    logits.requires_grad_()
    loss = unlikelihood(logits, torch.tensor([7]))
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 20
    assert logits.grad[0, 7] > 0.99  # pushing the tail's logit down lowers the loss at full strength


def test_suppression_stops_pushing_facts_already_out_of_the_top_ranks():
    torch.manual_seed(1)
    logits = torch.randn(4, 50)
    tail = logits.argsort(-1, descending=True)[:, [0, 3, 20, 40]].diagonal()  # ranks 1, 4, 21, 41
    assert tail_rank(logits, tail).tolist() == [1, 4, 21, 41]
    for kind in ("unlikely", "uniform", "margin"):
        x = logits.clone().requires_grad_()
        suppression(x, tail, kind, until_rank=10).backward()
        active = x.grad.abs().sum(-1) > 0
        assert active.tolist() == [True, True, False, False]
        if kind != "margin":  # the margin is a hinge at its rank by itself
            always = logits.clone().requires_grad_()
            suppression(always, tail, kind, until_rank=None).backward()
            assert (always.grad.abs().sum(-1) > 0).all()
    per_fact = unlikelihood(logits, tail)
    assert torch.allclose(suppression(logits, tail, "unlikely", 10), (per_fact * torch.tensor([1, 1, 0, 0])).mean())


def test_reference_cache_matches_model(tiny_model):
    data = tiny_data(tiny_model)
    ref = reference(tiny_model, data.control, data.lm, top_k=8)
    with torch.no_grad():
        direct = tiny_model(data.control.tokens).log_softmax(-1)[torch.arange(len(data.control)), data.control.predict_pos]
        lm = tiny_model(data.lm).log_softmax(-1).topk(8, dim=-1)
        assert torch.allclose(kg_logits(tiny_model, data.control).log_softmax(-1), direct, atol=1e-5)
    assert torch.allclose(ref.control_logp, direct, atol=1e-5)
    assert torch.equal(ref.lm_index, lm.indices) and torch.allclose(ref.lm_logp, lm.values, atol=1e-5)

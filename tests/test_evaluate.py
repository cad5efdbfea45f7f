"""Next-token metrics against a naive computation over the full logits."""

from collections import Counter

import pytest
import torch

from circuitcut.evaluate import _Tally, common_tokens, evaluate_tokens, sparsity_text


def _naive(logits, tokens, k_common):
    """Every metric position by position, in plain Python over float64 logits."""
    counts = Counter(tokens[:, 1:].flatten().tolist())
    common = {t for t, _ in sorted(counts.items(), key=lambda tc: (-tc[1], tc[0]))[:k_common]}
    rows = []
    for b in range(tokens.shape[0]):
        for p in range(tokens.shape[1] - 1):
            row, target = logits[b, p].double(), int(tokens[b, p + 1])
            above = int((row > row[target]).sum())  # a target tied with the best counts as top-1
            nll = float(torch.logsumexp(row, 0) - row[target])
            rows.append((above < 1, above < 10, target not in common, nll))
    n, kept = len(rows), [r for r in rows if r[2]]
    return {
        "top1": 100 * sum(r[0] for r in rows) / n,
        "top10": 100 * sum(r[1] for r in rows) / n,
        "top1_skip": 100 * sum(r[0] for r in kept) / len(kept),
        "top10_skip": 100 * sum(r[1] for r in kept) / len(kept),
        "loss": sum(r[3] for r in rows) / n,
        "n_tokens": n,
    }


def test_metrics_match_a_naive_computation_on_the_tiny_model(tiny_model):
    # Five windows in batches of two: the last batch is short. Few distinct tokens, so the model
    # hits some targets and skip-common removes a real share of positions.
    tokens = torch.randint(0, 40, (5, 24), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        logits = tiny_model(tokens)
    expected = _naive(logits, tokens, k_common=5)
    got = evaluate_tokens(tiny_model, tokens, skip_common=5, batch_size=2)
    for name in ("top1", "top10", "top1_skip", "top10_skip", "loss"):
        assert getattr(got, name) == pytest.approx(expected[name], abs=1e-4), name
    assert got.n_tokens == expected["n_tokens"] == 5 * 23
    assert got.perplexity == pytest.approx(torch.tensor(expected["loss"]).exp().item(), rel=1e-5)
    assert 0 < got.top1_skip < got.top10_skip and got.top10 > got.top1


def test_ties_in_logits_count_the_target_as_ranked_first():
    tokens = torch.tensor([[0, 1, 2, 3, 4]])
    logits = torch.zeros(1, 5, 12)
    logits[0, 0, [1, 7]] = 5.0  # target 1 tied with token 7 for the best logit
    logits[0, 1, :] = torch.arange(12.0)  # target 2 has nine logits above it: top-10, not top-1
    logits[0, 2, :] = torch.arange(12.0)
    logits[0, 2, 3] = 0.5  # target 3 has ten logits above it: neither
    logits[0, 3, :] = 1.0  # all tied: target 4 is top-1
    tally = _Tally(torch.tensor([], dtype=torch.long))
    tally(tokens, logits)
    got = tally.result()
    expected = _naive(logits, tokens, k_common=0)
    assert (got.top1, got.top10) == (expected["top1"], expected["top10"]) == (50.0, 75.0)
    assert got.loss == pytest.approx(expected["loss"], rel=1e-6)


def test_common_tokens_break_ties_by_token_id():
    """``topk`` picked among equally frequent targets in no stated order."""
    # Targets: 9 three times, then 2, 5, 7 and 30 twice each: k=3 takes 9 and the two lowest ids.
    tokens = torch.tensor([[0, 9, 9, 9, 30, 30, 7, 7, 5, 5, 2, 2]])
    assert common_tokens(tokens, 3).tolist() == [9, 2, 5]
    assert common_tokens(tokens, 50).tolist() == [9, 2, 5, 7, 30]


def test_sparsity_text_keeps_two_digits_of_what_is_left():
    assert sparsity_text(99.6484) == "99.65"  # 81 of 23,040 neurons
    assert sparsity_text(99.99884) == "99.9988"  # 616 of 53 million weights, not "100.00"
    assert (sparsity_text(80.3), sparsity_text(100.0)) == ("80.30", "100.00")

import pytest
import torch

from circuitcut.pruning.scoring import next_removal, selectivity_scores, unit_scores
from circuitcut.sites import ModelShape
from circuitcut.stats import NeuronStats, SiteSums

SHAPE = ModelShape("toy", n_layers=1, d_model=4, d_mlp=2, n_heads=1, n_key_value_heads=1, d_head=4)


def stats_of(x: torch.Tensor) -> NeuronStats:
    """Statistics of activations ``x`` (tokens x the toy model's two mlp neurons), summed directly."""
    x = x.double()
    sums = SiteSums(*(s[None] for s in ((x > 0).sum(0).double(), x.sum(0), x.abs().sum(0), x.square().sum(0),
                                        x.abs().sqrt().sum(0))))
    return NeuronStats(SHAPE, len(x), {"mlp": sums})


def test_mean_scores_the_size_of_the_difference_of_signed_means():
    forget = stats_of(torch.tensor([[-3.0, 1.0], [-1.0, 1.0]]))  # means -2, 1
    retain = stats_of(torch.tensor([[1.0, 2.0], [-1.0, 0.0]]))  # means 0, 1
    scores = selectivity_scores(forget, retain, "mean", {"mlp": 1e-3})["mlp"][0]
    torch.testing.assert_close(scores, torch.tensor([2.0, 0.0]))  # a ratio would rank the first neuron last


@pytest.mark.parametrize("importance, expected", [("sqrt", [1.5 / (1 + 1e-3), 2 / (1 + 1e-3)]),
                                                  ("abs", [2.5 / (1 + 1e-3), 4 / (1 + 1e-3)])])
def test_ratio_importances_divide_forget_by_retain_plus_eps(importance, expected):
    forget = stats_of(torch.tensor([[4.0, -4.0], [-1.0, 4.0]]))  # sqrt|x| means 1.5, 2; |x| means 2.5, 4
    retain = stats_of(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))  # 1, 1 for both
    scores = selectivity_scores(forget, retain, importance, {"mlp": 1e-3})["mlp"][0]
    torch.testing.assert_close(scores, torch.tensor(expected))


HEADS = ModelShape("toy", n_layers=1, d_model=8, d_mlp=2, n_heads=2, n_key_value_heads=2, d_head=4)


@pytest.mark.parametrize("head_score, expected", [("median", [2.5, 6.0]), ("mean", [4.0, 6.0])])
def test_a_heads_score_is_the_median_or_mean_of_its_neurons_scores(head_score, expected):
    """taker's torch.quantile(q=0.5) median interpolates between the two middle scores (torch.median would not)."""
    neurons = {"attn_z": torch.tensor([[1.0, 10.0, 2.0, 3.0, 6.0, 6.0, 6.0, 6.0]])}
    scores = unit_scores(neurons, ("heads",), HEADS, head_score)
    torch.testing.assert_close(scores["heads"], torch.tensor([expected]))
    assert torch.equal(unit_scores(neurons, ("attn_z",), HEADS, head_score)["attn_z"], neurons["attn_z"])


def test_a_removed_head_is_all_its_neurons_and_is_not_chosen_again():
    scores = {"heads": torch.tensor([[5.0, 1.0]])}
    removed = {"attn_z": torch.zeros(1, 8, dtype=torch.bool)}
    first = next_removal(scores, removed, {"heads": 1}, HEADS)["attn_z"]
    assert first.tolist() == [[True] * 4 + [False] * 4]
    second = next_removal(scores, {"attn_z": first}, {"heads": 1}, HEADS)["attn_z"]
    assert second.tolist() == [[False] * 4 + [True] * 4]

import pytest
import torch

from circuitcut.pruning.scoring import selectivity_scores
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

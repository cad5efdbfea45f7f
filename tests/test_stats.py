import pytest
import torch

from circuitcut.sites import IMPORTANCES, ModelShape, hook_name
from circuitcut.stats import NeuronStats, StatsHook, collect_stats


def _tokens(n=6, pos=16, seed=0):
    return torch.randint(0, 1000, (n, pos), generator=torch.Generator().manual_seed(seed))


def _direct(model, tokens, kind, layer, token_mask=None):
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n == hook_name(kind, layer))
    x = cache[hook_name(kind, layer)].flatten(2) if kind != "mlp" else cache[hook_name(kind, layer)]
    x = x.reshape(-1, x.shape[-1]).double()
    if token_mask is not None:
        x = x[token_mask.flatten()]
    return {
        "freq": (x > 0).double().mean(0),
        "abs": x.abs().mean(0),
        "rms": x.pow(2).mean(0).sqrt(),
        "std": x.std(0, unbiased=False),
        "sqrt": x.abs().sqrt().mean(0),
        "mean": x.mean(0),
    }


@pytest.mark.parametrize("kind", ["mlp", "attn_v", "attn_z"])
def test_statistics_match_a_direct_computation(tiny_model, kind):
    tokens = _tokens()
    mask = torch.rand(tokens.shape, generator=torch.Generator().manual_seed(1)) > 0.3
    stats = collect_stats(tiny_model, tokens, [kind], token_mask=mask, batch_size=4)
    assert stats.count == int(mask.sum())
    for layer in range(tiny_model.cfg.n_layers):
        direct = _direct(tiny_model, tokens, kind, layer, mask)
        for how, expected in direct.items():
            got = stats.importance(how)[kind][layer]
            torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-4)


def test_sqrt_and_mean_importance_on_a_small_tensor(tiny_model):
    """The reference's sqrt (mean sqrt|x|) and mean (signed) on numbers worked by hand."""
    shape = ModelShape.of(tiny_model)
    stats = NeuronStats.empty(shape, ["mlp"])
    hook = StatsHook(stats.sums["mlp"], layer=1)
    x = torch.zeros(1, 2, shape.d_mlp)
    x[0, :, :2] = torch.tensor([[4.0, -9.0], [1.0, 0.0]])  # two tokens, two neurons
    hook(x)
    hook.flush()
    stats.count = 2
    torch.testing.assert_close(stats.importance("sqrt")["mlp"][1, :2], torch.tensor([1.5, 1.5]))
    torch.testing.assert_close(stats.importance("mean")["mlp"][1, :2], torch.tensor([2.5, -4.5]))
    assert stats.importance("sqrt")["mlp"][0].abs().sum() == 0  # another layer's sums are untouched


def test_two_halves_merge_into_one_pass(tiny_model):
    tokens = _tokens(8)
    whole = collect_stats(tiny_model, tokens, ["mlp", "attn_v"])
    merged = collect_stats(tiny_model, tokens[:3], ["mlp", "attn_v"]) + collect_stats(
        tiny_model, tokens[3:], ["mlp", "attn_v"]
    )
    assert merged.count == whole.count
    for how in IMPORTANCES:
        for kind in ("mlp", "attn_v"):
            torch.testing.assert_close(merged.importance(how)[kind], whole.importance(how)[kind])


def test_padding_positions_never_count(tiny_model):
    tokens = _tokens(4)
    mask = torch.ones_like(tokens, dtype=torch.bool)
    mask[:, 10:] = False
    padded = tokens.clone()
    padded[:, 10:] = 7  # different "padding" tokens must not change anything: causal model
    a = collect_stats(tiny_model, tokens, ["mlp"], token_mask=mask)
    b = collect_stats(tiny_model, padded, ["mlp"], token_mask=mask)
    torch.testing.assert_close(a.importance("rms")["mlp"], b.importance("rms")["mlp"])


def test_empty_and_mismatched_statistics_are_refused(tiny_model):
    shape = ModelShape.of(tiny_model)
    with pytest.raises(ValueError, match="No tokens"):
        NeuronStats.empty(shape, ["mlp"]).importance("abs")
    with pytest.raises(ValueError, match="different"):
        NeuronStats.empty(shape, ["mlp"]) + NeuronStats.empty(shape, ["attn_v"])
    with pytest.raises(ValueError, match="Unknown site"):
        NeuronStats.empty(shape, ["mlpp"])

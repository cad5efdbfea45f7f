"""Whole attention-head pruning (``sites=("heads",)``) on a planted head."""

import pytest
import torch

import circuitcut
from circuitcut.pruning import PruningConfig, prune
from circuitcut.sites import ModelShape
from pruning_helpers import forget_head_data, plant_forget_head, write_mha_model


@pytest.fixture(scope="module")
def mha_dir(tiny_model_dir, tmp_path_factory):
    return write_mha_model(tiny_model_dir, tmp_path_factory.mktemp("mha"))


@pytest.fixture()
def planted(mha_dir):
    model = circuitcut.load_model(str(mha_dir), device="cpu")
    return model, plant_forget_head(model)


def removed_heads(mask, shape: ModelShape) -> torch.Tensor:
    """``[layer, head]``: True where all of a head's neurons are removed; refuses a head removed in part."""
    z = mask.by_kind()["attn_z"].view(shape.n_layers, shape.n_heads, shape.d_head)
    assert torch.equal(z.any(-1), z.all(-1)), "a head was removed in part"
    return z.all(-1)


@pytest.mark.parametrize("head_score", ["median", "mean"])
def test_head_pruning_removes_the_planted_head_and_beats_random(planted, head_score):
    model, (layer, head) = planted
    shape = ModelShape.of(model)
    config = PruningConfig(forget="f", retain="r", sites=("heads",), steps=1, frac=0.125, tokens=128, window=16,
                           head_score=head_score)
    result = prune(model, config, data=forget_head_data(), progress=False)
    selective, random = (removed_heads(result.masks[m], shape) for m in ("selective", "random"))
    assert selective.nonzero().tolist() == [[layer, head]]
    assert int(random.sum()) == 1 and not random[layer, head]  # the same size, elsewhere
    original, pruned = result.history[0], result.steps("selective")[1]
    assert original["forget"]["top1"] == 100 and pruned["forget"]["top1"] == 0
    assert pruned["retain"] == original["retain"]  # silent on retain data: removing it changes nothing there
    assert result.selectivity("selective")["selectivity"] > result.selectivity("random")["selectivity"] + 90


def test_a_fraction_per_kind_removes_its_count_of_each(planted):
    model, _ = planted
    shape = ModelShape.of(model)
    config = PruningConfig(forget="f", retain="r", sites=("mlp", "heads"), steps=2, frac={"mlp": 0.05, "heads": 0.25},
                           tokens=128, window=16, fill="mean")
    result = prune(model, config, data=forget_head_data(), progress=False)
    for method in ("selective", "random"):
        mask = result.masks[method]
        assert int(removed_heads(mask, shape).sum()) == 2 * 2  # 25 % of 8 heads per step
        assert int(mask.by_kind()["mlp"].sum()) == 2 * 10  # 5 % of 192 neurons per step, rounded
        assert mask.fill == "mean" and set(mask.means) == set(mask.removed)
    assert result.steps("random")[1]["fraction"] == {"mlp": 10 / 192, "attn_z": 0.25}

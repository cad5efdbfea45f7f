import pytest
import torch

from circuitcut.masks import Mask
from circuitcut.pruning import PruningConfig, PruningData, PruningResult, prune, top_unpruned
from circuitcut.pruning.report import drop
from pruning_helpers import plant_forget_neuron, planted_data


@pytest.fixture()
def data():
    return planted_data()


def test_a_neuron_used_only_by_forget_data_is_pruned_first(tiny_model, data):
    layer, neuron = plant_forget_neuron(tiny_model)
    config = PruningConfig(forget="f", retain="r", steps=1, frac=0.01, tokens=128, window=16, baseline=False)
    result = prune(tiny_model, config, data=data, progress=False)
    removed = result.masks["selective"].by_kind()["mlp"]
    assert removed[layer, neuron]
    assert int(removed.sum()) == round(0.01 * 2 * 96)
    # Scoring direction: swapped roles, the neuron is the least forget-specific and stays.
    swapped = PruningData(data.retain_stats, data.forget_stats, data.retain_eval, data.forget_eval)
    result = prune(tiny_model, config, data=swapped, progress=False)
    assert not result.masks["selective"].by_kind()["mlp"][layer, neuron]


@pytest.mark.parametrize("importance", ["sqrt", "mean"])
def test_sqrt_and_mean_importance_find_the_planted_neuron(tiny_model, data, importance):
    layer, neuron = plant_forget_neuron(tiny_model)
    config = PruningConfig(forget="f", retain="r", importance=importance, steps=1, frac=0.01, tokens=128, window=16,
                           baseline=False)
    result = prune(tiny_model, config, data=data, progress=False)
    assert result.masks["selective"].by_kind()["mlp"][layer, neuron]
    forget, retain = result.importances["forget.mlp"], result.importances["retain.mlp"]
    if importance == "mean":  # signed, and scored by the size of the difference
        assert forget[layer, neuron] > 0 and retain[layer, neuron] == 0
        assert (forget - retain).abs().argmax() == layer * forget.shape[1] + neuron


def test_history_counts_steps_fractions_and_baseline(tiny_model, data):
    config = PruningConfig(forget="f", retain="r", sites=("mlp", "attn_v"), steps=3, frac=0.05,
                           tokens=128, window=16)
    result = prune(tiny_model, config, data=data, progress=False)
    assert [h["method"] for h in result.history] == ["original"] + ["selective"] * 3 + ["random"] * 3
    last = result.steps("random")[-1]
    assert last["fraction"]["mlp"] == pytest.approx(3 * round(0.05 * 192) / 192)
    assert last["fraction"]["attn_v"] == pytest.approx(3 * round(0.05 * 64) / 64)
    for method in ("selective", "random"):
        masks = result.masks[method].by_kind()
        assert int(masks["mlp"].sum()) == 3 * round(0.05 * 192)
    s = result.selectivity("selective")
    h = result.steps("selective")[s["step"]]
    base = result.history[0]
    assert s["forget_drop"] == pytest.approx(drop(base["forget"]["top1"], h["forget"]["top1"]))
    assert "selectivity (random)" in result.summary()


def test_one_shot_ranks_once(tiny_model, data):
    config = PruningConfig(forget="f", retain="r", steps=2, frac=0.05, tokens=128, window=16,
                           baseline=False, one_shot=True)
    result = prune(tiny_model, config, data=data, progress=False)
    imp_f, imp_r = result.importances["forget.mlp"], result.importances["retain.mlp"]
    expected = top_unpruned(imp_f / (imp_r + 1e-3), torch.zeros_like(imp_f, dtype=torch.bool), 2 * round(0.05 * 192))
    assert torch.equal(result.masks["selective"].by_kind()["mlp"], expected)


def test_interrupted_run_resumes_to_the_same_masks(tiny_model, data, tmp_path, monkeypatch):
    config = PruningConfig(forget="f", retain="r", steps=4, frac=0.05, tokens=128, window=16)
    whole = prune(tiny_model, config, data=data, out_dir=tmp_path / "whole", progress=False)

    import circuitcut.pruning.run as pruning

    calls = {"n": 0}
    real_evaluate = pruning.evaluate_tokens

    def interrupt_after_some_steps(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2 * 3:  # original + two selective steps, then "killed"
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(pruning, "evaluate_tokens", interrupt_after_some_steps)
    with pytest.raises(KeyboardInterrupt):
        prune(tiny_model, config, data=data, out_dir=tmp_path / "cut", progress=False)
    monkeypatch.setattr(pruning, "evaluate_tokens", real_evaluate)
    assert len(PruningResult.load(tmp_path / "cut").history) == 3
    with pytest.raises(FileExistsError, match="--resume"):
        prune(tiny_model, config, data=data, out_dir=tmp_path / "cut", progress=False)
    resumed = prune(tiny_model, config, data=data, out_dir=tmp_path / "cut", resume=True, progress=False)
    loaded = PruningResult.load(tmp_path / "cut", tiny_model)
    for method in ("selective", "random"):
        assert torch.equal(resumed.masks[method].by_kind()["mlp"], whole.masks[method].by_kind()["mlp"])
        assert torch.equal(loaded.masks[method].by_kind()["mlp"], whole.masks[method].by_kind()["mlp"])
    assert [h["step"] for h in loaded.history] == [h["step"] for h in whole.history]


def test_a_saved_mask_applies_to_a_freshly_loaded_model(tiny_model, tiny_model_dir, data, tmp_path):
    import circuitcut

    config = PruningConfig(forget="f", retain="r", steps=1, frac=0.1, tokens=128, window=16, baseline=False)
    result = prune(tiny_model, config, data=data, out_dir=tmp_path, progress=False)
    fresh = circuitcut.load_model(str(tiny_model_dir), device="cpu")
    mask = Mask.load(tmp_path / "selective_mask.safetensors", fresh)
    with torch.inference_mode():
        expected = tiny_model.run_with_hooks(data.forget_eval[:2], fwd_hooks=result.masks["selective"].hooks(tiny_model))
    mask.remove_from(fresh)
    with torch.inference_mode():
        torch.testing.assert_close(fresh(data.forget_eval[:2]), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sites": ("mlp", "ffn")}, "Unknown site"),
        ({"frac": 0.0}, "outside"),
        ({"frac": 1.5}, "outside"),
        ({"retain": "python"}, "two different corpora"),
        ({"steps": 60, "frac": 0.02}, "more than all mlp units"),
        ({"importance": "l2"}, "Unknown importance"),
        ({"eps": {"attn_v": 1e-4}}, "not among the pruned sites"),
        ({"sites": ("heads", "attn_z")}, "heads and attn_z both remove attn_z neurons.*prune one of them"),
        ({"sites": ("heads",), "head_score": "max"}, "Unknown head_score 'max': choose from median, mean"),
        ({"sites": ("mlp", "heads"), "frac": {"mlp": 0.02}}, r"no fraction for \['heads'\]: add heads=FLOAT to frac"),
        ({"frac": {"mlp": 0.02, "heads": 0.05}}, r"\['heads'\], which are not among the pruned sites"),
        ({"sites": ("mlp", "heads"), "frac": {"mlp": 0.02, "heads": 1.5}}, r"frac=1.5 \(heads\) is outside"),
        ({"sites": ("mlp", "heads"), "frac": {"mlp": 0.02, "heads": 0.25}, "steps": 5}, "more than all heads units"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PruningConfig(**{"forget": "python", "retain": "prose", **kwargs})


def test_a_fraction_that_removes_no_neuron_is_refused(tiny_model, data):
    config = PruningConfig(forget="f", retain="r", frac=0.001, steps=1, tokens=128, window=16)
    with pytest.raises(ValueError, match="removes none of this model's 192 mlp units"):
        prune(tiny_model, config, data=data, progress=False)


def test_resume_refuses_another_model_or_setting_and_names_what_differs(tiny_model, tiny_model_dir, data, tmp_path):
    """A run folder resumed with another model took its statistics without a word."""
    import shutil

    import circuitcut
    from circuitcut.runs import read_json

    config = PruningConfig(forget="f", retain="r", steps=2, frac=0.05, tokens=128, window=16)
    prune(tiny_model, config, data=data, out_dir=tmp_path / "run", progress=False)
    shutil.copytree(tiny_model_dir, tmp_path / "same-shape-other-model")
    other = circuitcut.load_model(str(tmp_path / "same-shape-other-model"), device="cpu")
    # A run killed before its first step holds no mask that would name the model.
    (tmp_path / "early").mkdir()
    shutil.copy(tmp_path / "run" / "config.json", tmp_path / "early" / "config.json")
    for folder in ("early", "run"):
        with pytest.raises(ValueError, match=rf"model: saved \"{tiny_model_dir.resolve()}\", asked \".*same-shape-other"):
            prune(other, config, data=data, out_dir=tmp_path / folder, resume=True, progress=False)
    bigger = PruningConfig(forget="f", retain="r", steps=2, frac=0.1, tokens=128, window=16)
    with pytest.raises(ValueError, match=r"other settings \(frac: saved 0.05, asked 0.1\)"):
        prune(tiny_model, bigger, data=data, out_dir=tmp_path / "run", resume=True, progress=False)
    saved = read_json(tmp_path / "run" / "config.json")
    assert saved["model"] == str(tiny_model_dir.resolve())
    assert saved["dtype"] == "torch.float32" and saved["window_prefix"] == []
    # A folder written before the dtype and window prefix were recorded still resumes.
    from circuitcut.runs import write_json

    write_json(tmp_path / "run" / "config.json", {k: v for k, v in saved.items() if k not in ("dtype", "window_prefix")})
    prune(tiny_model, config, data=data, out_dir=tmp_path / "run", resume=True, progress=False)


def test_a_run_folder_records_its_provenance_and_a_resume_adds_its_own(tiny_model, data, tmp_path):
    """The date or code of a resume differs from the first start's: that must not refuse it, while a changed
    setting still is; a folder written before provenance was recorded still loads and resumes."""
    from importlib import metadata

    from circuitcut.runs import PROVENANCE, read_json, write_json

    config = PruningConfig(forget="f", retain="r", steps=1, frac=0.05, tokens=128, window=16, baseline=False)
    prune(tiny_model, config, data=data, out_dir=tmp_path, progress=False)
    saved = read_json(tmp_path / "config.json")
    (first,) = saved[PROVENANCE]
    assert first["circuitcut"] == metadata.version("circuitcut")
    assert {"git_commit", "torch", "transformers", "date", "command"} <= set(first)

    first |= {"date": "2020-01-01T00:00:00+00:00", "git_commit": "0" * 40, "circuitcut": "0.0.1"}
    write_json(tmp_path / "config.json", saved)
    prune(tiny_model, config, data=data, out_dir=tmp_path, resume=True, progress=False)
    starts = read_json(tmp_path / "config.json")[PROVENANCE]
    assert len(starts) == 2 and starts[0] == first and starts[1]["date"] > first["date"]
    bigger = PruningConfig(forget="f", retain="r", steps=1, frac=0.1, tokens=128, window=16, baseline=False)
    with pytest.raises(ValueError, match=r"other settings \(frac: saved 0.05, asked 0.1\): "):
        prune(tiny_model, bigger, data=data, out_dir=tmp_path, resume=True, progress=False)

    write_json(tmp_path / "config.json", {k: v for k, v in saved.items() if k != PROVENANCE})
    assert PruningResult.load(tmp_path).config == config
    prune(tiny_model, config, data=data, out_dir=tmp_path, resume=True, progress=False)
    assert len(read_json(tmp_path / "config.json")[PROVENANCE]) == 1


def test_mean_fill_sets_pruned_neurons_to_their_retain_means(tiny_model, data, tmp_path):
    from circuitcut.masks import mean_activations

    base = dict(forget="f", retain="r", steps=2, frac=0.05, tokens=128, window=16, baseline=False)
    zero = prune(tiny_model, PruningConfig(**base), data=data, progress=False)
    mean = prune(tiny_model, PruningConfig(**base, fill="mean"), data=data, out_dir=tmp_path / "mean", progress=False)
    assert mean.history[0] == zero.history[0]  # the unpruned model is the same either way
    # the first step ranks the unpruned model alike; what the removed neurons leave behind differs
    first = [next(h for h in r.history if h["step"] == 1) for r in (zero, mean)]
    assert first[0]["per_layer"] == first[1]["per_layer"] and first[0]["forget"] != first[1]["forget"]
    mask = PruningResult.load(tmp_path / "mean", tiny_model).masks["selective"]
    expected = mean_activations(tiny_model, data.retain_stats, ["mlp"])
    assert mask.fill == "mean" and all(torch.allclose(mask.means[n], v) for n, v in expected.items())
    with pytest.raises(ValueError, match="other settings .*fill"):
        prune(tiny_model, PruningConfig(**base), data=data, out_dir=tmp_path / "mean", resume=True, progress=False)

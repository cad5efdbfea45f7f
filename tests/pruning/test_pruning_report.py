"""A pruning run as a table: the DataFrame holds the numbers the text summary prints."""

from __future__ import annotations

import pytest

from circuitcut.pruning import PruningConfig, prune
from pruning_helpers import plant_forget_neuron, planted_data


def test_the_frame_holds_the_summarys_numbers(tiny_model):
    plant_forget_neuron(tiny_model)
    config = PruningConfig(forget="f", retain="r", sites=("mlp", "attn_v"), steps=2, frac=0.05, tokens=128, window=16)
    result = prune(tiny_model, config, data=planted_data(), progress=False)
    frame = result.to_frame()
    assert len(frame) == len(result.history) == 5
    assert list(frame["method"]) == ["original", "selective", "selective", "random", "random"]

    summary = result.summary().splitlines()
    for line, (_, row) in zip(summary[1:], frame.iterrows()):  # the table's rows, in order
        method, step, pruned, _, forget, retain, _, forget_ppl, retain_ppl = line.split()
        assert (method, int(step)) == (row["method"], row["step"])
        assert pruned == f"{100 * row['pruned']:.1f}%"
        assert (forget, retain) == (f"{row['forget_top1']:.1f}%", f"{row['retain_top1']:.1f}%")
        assert (forget_ppl, retain_ppl) == (f"{row['forget_perplexity']:.2f}", f"{row['retain_perplexity']:.2f}")
    text = "\n".join(summary)
    for method in ("selective", "random"):
        steps = frame[frame["method"] == method]
        for metric in ("top1", "top10"):  # top-1 is all zeros on the tiny model; its top-10 moves
            best = steps.loc[steps[f"selectivity_{metric}"].idxmax()]
            s = result.selectivity(method, metric)
            assert (best["selectivity_" + metric], best["step"]) == (pytest.approx(s["selectivity"]), s["step"])
            assert (best[f"forget_drop_{metric}"], best[f"retain_drop_{metric}"]) == pytest.approx(
                (s["forget_drop"], s["retain_drop"]))
        top1 = steps.loc[steps["selectivity_top1"].idxmax()]
        assert f"selectivity ({method}): {top1['selectivity_top1']:.1f} at step {top1['step']} " in text
    assert frame["selectivity_top10"].min() < -50  # the planted neuron hurt forget top-10: removed, it rises

    # every metric of each dataset and each site kind's fraction, beside the summary's
    last = result.history[-1]
    assert frame.iloc[-1]["pruned_attn_v"] == pytest.approx(last["fraction"]["attn_v"])
    assert frame.iloc[-1]["retain_top10"] == pytest.approx(last["retain"]["top10"])
    assert frame.iloc[-1]["forget_loss"] == pytest.approx(last["forget"]["loss"])
    assert (frame[frame["method"] == "original"][["forget_drop_top10", "selectivity_top10"]] == 0).all().all()

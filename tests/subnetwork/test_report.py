"""A subnetwork run's report as a table: the DataFrame holds the numbers format_report prints; the bootstrap
interval of a dPPL over resampled facts."""

from __future__ import annotations

import math

import pytest
import torch

from circuitcut.subnetwork import format_report
from circuitcut.subnetwork.report import bootstrap_dppl, report_frame


def _metrics(first_token: bool = True) -> dict:
    """Two KG datasets and ControlLM, with two random masks: what evaluate_subnetwork returns, in small."""
    def kg(ppl, top10, n=4):
        return {"ppl": ppl, "ppl_first": ppl / 2, "top10": top10, "n": n}

    original = {"target": kg(10.0, 75.0), "control": kg(20.0, 50.0, n=6), "lm": {"ppl": 30.0, "top10": 40.0, "n": 64}}
    remaining = {"target": kg(35.0, 25.0), "control": kg(21.0, 50.0, n=6), "lm": {"ppl": 30.6, "top10": 39.0, "n": 64}}
    per_seed = [{"target": kg(11.0, 75.0), "control": kg(20.5, 50.0, n=6), "lm": {"ppl": 30.3, "top10": 40.0, "n": 64}},
                {"target": kg(12.0, 50.0), "control": kg(21.5, 33.3, n=6), "lm": {"ppl": 30.9, "top10": 38.0, "n": 64}}]

    def change(before, after):
        keys = ("ppl", "ppl_first") if first_token else ("ppl",)
        return {"d" + k: 100 * (after[k] - before[k]) / before[k] for k in keys if k in before}

    changes = [{name: change(original[name], seed[name]) for name in original} for seed in per_seed]
    spread = {name: {"dppl": {"mean": (changes[0][name]["dppl"] + changes[1][name]["dppl"]) / 2,
                              "std": abs(changes[0][name]["dppl"] - changes[1][name]["dppl"]) / math.sqrt(2)}}
              for name in original}
    return {"model": "tiny", "target": "isa:animal", "sparsity": 99.5,
            "size": {"n_subnetwork": 5, "n_units": 1000, "granularity": "neuron"},
            "original": original, "remaining": remaining,
            "change": {name: change(original[name], remaining[name]) for name in original},
            "random": {"seeds": [0, 1], "change": spread, "per_seed": per_seed}}


def _numbers(line: str) -> list[float]:
    return [float(word.replace("%", "")) for word in line.split()[1:] if word != "±"]


@pytest.mark.parametrize("first_token", [True, False])
def test_the_frame_holds_the_reports_numbers(first_token):
    metrics = _metrics(first_token)
    frame = report_frame(metrics)
    assert list(frame["dataset"]) == ["target", "control", "lm"]
    columns = ["n", "ppl_original", "ppl_remaining", "dppl", "dppl_random_mean", "dppl_random_std", "dppl_first",
               "top10_original", "top10_remaining", "top10_random"]
    # the first tail token's dPPL is a column when the run measured it; ControlLM (windows) has none
    assert ("dppl_first" in frame) == first_token
    lines = format_report(metrics).splitlines()[2:]  # below the run's line and the header
    for line, (_, row) in zip(lines, frame.iterrows(), strict=True):
        assert line.split()[0] == row["dataset"]
        printed = _numbers(line)
        expected = [row.get(c, math.nan) for c in columns]
        for got, want, column in zip(printed, expected, columns, strict=True):
            assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, abs=0.051), column
    target = frame.iloc[0]
    assert target["dppl"] == pytest.approx(250.0) and target["top10_random"] == pytest.approx(62.5)
    assert target["dppl_random_mean"] == pytest.approx(15.0)
    assert target["dppl_random_std"] == pytest.approx(10 / math.sqrt(2))


def test_equal_damage_on_every_fact_leaves_no_interval():
    low, high = bootstrap_dppl(torch.full((100,), 0.1))
    assert low == pytest.approx(100 * (math.exp(0.1) - 1)) and high == pytest.approx(low)


def test_damage_on_a_few_facts_gives_a_wide_interval_around_the_estimate():
    increase = torch.zeros(100)
    increase[:5] = 2.0  # five facts carry all of it: another sample of facts may hold none or twice as many
    low, high = bootstrap_dppl(increase)
    estimate = 100 * (math.exp(increase.mean().item()) - 1)
    assert low < estimate / 2 and high > 1.5 * estimate
    assert bootstrap_dppl(increase) == (low, high)  # seeded

"""The rule that picks the final mask: the sparsest validated mask that keeps the bounds, else the least violation."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from circuitcut.evaluate import percent
from circuitcut.subnetwork.selection import Selector
from subnetwork_helpers import tiny_config


class Masker:
    def set_keep(self, keep):
        self.keep = keep


def scripted(measurements):
    """A selector whose validation figures are given (original first), not measured."""
    data = SimpleNamespace(val_kg={"target": None, "control": None}, val_lm=torch.zeros(1, 4))  # never read: scripted
    selector = Selector(model=None, data=data, config=tiny_config(max_target_top10=10, max_control_dppl=10, max_lm_dppl=5))
    queue = iter(measurements)
    selector._measure = lambda: next(queue)
    selector.measure_original()
    return selector


def mask(n_in: int, n: int = 100) -> dict:
    m = torch.zeros(n, dtype=torch.bool)
    m[:n_in] = True
    return {"site": m}


def test_sparsest_mask_within_bounds_wins_not_the_last():
    original = {"target_top10": 100.0, "control_ppl": 10.0, "lm_ppl": 20.0}
    steps = [  # (subnetwork size, target top-10, control ppl, lm ppl)
        (30, 50.0, 10.5, 20.5),  # target not suppressed
        (20, 5.0, 10.8, 20.6),  # within bounds
        (10, 0.0, 10.9, 20.9),  # within bounds and sparser: the choice
        (5, 20.0, 10.1, 20.1),  # sparsest, but the target came back
        (8, 0.0, 12.0, 20.2),  # control +20 %: out
    ]
    selector = scripted([original] + [dict(target_top10=t, control_ppl=c, lm_ppl=lm) for _, t, c, lm in steps])
    for i, (n_in, *_rest) in enumerate(steps):
        selector.validate(10 * (i + 1), mask(n_in), Masker())
    summary = selector.summary()
    assert summary["chosen_step"] == 30 and summary["rule_met"]
    assert selector.best_mask["site"].tolist() == list(range(10)) and selector.best.sparsity == 90
    assert [round(v["control_dppl"], 6) for v in summary["validations"]][:3] == [5.0, 8.0, 9.0]


def test_without_a_mask_in_bounds_the_least_violation_wins():
    original = {"target_top10": 100.0, "control_ppl": 10.0, "lm_ppl": 20.0}
    selector = scripted([original, dict(target_top10=40.0, control_ppl=10.0, lm_ppl=20.0),
                         dict(target_top10=20.0, control_ppl=10.5, lm_ppl=20.0),
                         dict(target_top10=20.0, control_ppl=12.0, lm_ppl=22.0)])
    for step, n_in in ((1, 10), (2, 20), (3, 30)):
        selector.validate(step, mask(n_in), Masker())
    assert selector.best.step == 2 and selector.best.excess == 10.0 and not selector.summary()["rule_met"]


def test_top10_is_exact_so_two_of_twenty_meets_a_10_percent_bound():
    rank = torch.tensor([3, 7] + [50] * 18)
    assert percent(rank <= 10) == 10.0  # a float32 mean gives 10.000000149, which the rule refused
    original = {"target_top10": 100.0, "control_ppl": 10.0, "lm_ppl": 20.0}
    selector = scripted([original, dict(target_top10=percent(rank <= 10), control_ppl=10.0, lm_ppl=20.0)])
    selector.validate(1, mask(5), Masker())
    assert selector.summary()["rule_met"]


def test_target_check_counts_only_rows_the_original_model_knows(monkeypatch):
    """Rows the original model never ranked in its top 10 must not count as suppressed."""
    import circuitcut.subnetwork.selection as selection

    ranks = iter([torch.tensor([3, 50, 5, 200]), torch.tensor([20, 50, 5, 200]), torch.tensor([20, 50, 30, 200])])
    monkeypatch.setattr(selection, "score_pairs", lambda model, batch: SimpleNamespace(rank=next(ranks)))
    monkeypatch.setattr(selection, "kg_metrics", lambda model, batch: {"ppl": 10.0})
    monkeypatch.setattr(selection, "evaluate_tokens", lambda model, tokens, **kw: SimpleNamespace(perplexity=20.0))
    data = SimpleNamespace(val_kg={"target": None, "control": None}, val_lm=torch.zeros(1, 4))
    selector = Selector(model=None, data=data, config=tiny_config(max_target_top10=10, max_control_dppl=10, max_lm_dppl=5))
    selector.measure_original()
    assert selector._original["target_top10"] == 100.0  # the two known rows, not 50 % of four
    first = selector.validate(1, mask(5), Masker())
    assert first.target_top10 == 50.0 and first.excess == 40.0  # one of the two known rows still in the top 10
    assert selector.validate(2, mask(5), Masker()).excess == 0
    assert selector.summary()["target_rows"] == {"known": 2, "all": 4}


def test_an_empty_mask_is_the_original_model_and_is_not_measured_again():
    original = {"target_top10": 100.0, "control_ppl": 10.0, "lm_ppl": 20.0}
    selector = scripted([original, {"target_top10": 0.0, "control_ppl": 10.5, "lm_ppl": 20.2}])
    masker = Masker()
    empty = selector.validate(5, mask(0), masker)
    assert not hasattr(masker, "keep")  # nothing set, nothing run
    assert (empty.target_top10, empty.control_dppl, empty.lm_dppl, empty.size) == (100.0, 0.0, 0.0, 0)
    some = selector.validate(10, mask(3), masker)  # the next measurement in the script
    assert (some.target_top10, some.size, some.changed) == (0.0, 3, 3) and hasattr(masker, "keep")

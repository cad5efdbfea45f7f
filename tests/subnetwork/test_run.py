"""find_subnetwork end to end (tiny model): folder, metrics, reload, data roles, refusals; a short SmolLM2 run."""

from __future__ import annotations

import math

import pytest
import torch

from circuitcut.data import kg
from circuitcut.data.kg import KnownTriplet, Triplet
from circuitcut.masks import Mask, MaskMismatchError
from circuitcut.sites import ModelShape
from circuitcut.subnetwork import (
    SubnetworkConfig, SubnetworkData, SubnetworkResult, build_data, find_subnetwork, format_report,
    missed_goals, seed_overlaps,
)
from circuitcut.subnetwork.data import _other_templates, _split, build_kg, check_target
from subnetwork_helpers import CONTROL, TARGET, isa_batch, tiny_config, tiny_data


def test_find_subnetwork_saves_and_loads(tiny_model, tmp_path):
    config = tiny_config(random_seeds=2)
    result = find_subnetwork(tiny_model, config, tmp_path / "run", progress=False, data=tiny_data(tiny_model))
    for name in ("config.json", "mask.safetensors", "metrics.json", "checkpoint.pt"):
        assert (tmp_path / "run" / name).exists()
    m = result.metrics
    assert set(m["change"]) == {"target", "target_paraphrase", "control", "lm"}
    assert all("dppl" in c for c in m["change"].values()) and "dppl_first" in m["change"]["target"]
    assert len(m["random"]["per_seed"]) == 2 and "std" in m["random"]["change"]["target"]["dppl"]
    crit = m["criticality"]["target"]
    assert crit["excess"] == pytest.approx(m["change"]["target"]["dppl"] - m["random"]["change"]["target"]["dppl"]["mean"])
    assert m["sparsity"] == pytest.approx(result.mask.sparsity())
    assert m["peak_rss_mb"] > 100  # this process: torch and a model at least
    assert m["selection"]["chosen_step"] in (2, 4) and len(m["selection"]["validations"]) == 2
    report = format_report(m)
    assert "target_paraphrase" in report and "validation rule" in report
    frame = result.to_frame()
    assert list(frame["dataset"]) == list(m["original"])
    assert list(frame["dppl"]) == [m["change"][name]["dppl"] for name in m["original"]]

    loaded = SubnetworkResult.load(tmp_path / "run", tiny_model)
    assert loaded.config == config and loaded.history == result.history
    assert all(torch.equal(loaded.mask.removed[n], v) for n, v in result.mask.removed.items())
    assert loaded.metrics["change"] == m["change"]
    # without a data override a finished folder is loaded: no facts are built or scored again
    assert find_subnetwork(tiny_model, config, tmp_path / "run", progress=False).metrics == loaded.metrics

    # started again on a finished run folder: resumes at the last step, trains nothing, same result
    again = find_subnetwork(tiny_model, config, tmp_path / "run", progress=False, data=tiny_data(tiny_model))
    assert again.history == result.history and all(torch.equal(again.mask.removed[n], v) for n, v in result.mask.removed.items())
    with pytest.raises(ValueError, match=r"another config \(steps: saved 4, asked 5\);"):
        find_subnetwork(tiny_model, tiny_config(steps=5), tmp_path / "run", progress=False, data=tiny_data(tiny_model))


def test_a_run_folder_records_its_provenance_and_a_resume_adds_its_own(tiny_model, tmp_path):
    """config.json is written at the start and again at the end: one start; a resume (here with an edited date
    and commit, as after an upgrade) is not refused and adds its own; a folder without provenance still loads."""
    from circuitcut.runs import PROVENANCE, read_json, write_json

    config = tiny_config(steps=2, validate_every=2, random_seeds=1)
    find_subnetwork(tiny_model, config, tmp_path, progress=False, data=tiny_data(tiny_model))
    saved = read_json(tmp_path / "config.json")
    (first,) = saved[PROVENANCE]
    assert {"circuitcut", "git_commit", "torch", "transformers", "date", "command"} <= set(first)
    first |= {"date": "2020-01-01T00:00:00+00:00", "git_commit": "0" * 40}
    write_json(tmp_path / "config.json", saved)
    find_subnetwork(tiny_model, config, tmp_path, progress=False, data=tiny_data(tiny_model))
    starts = read_json(tmp_path / "config.json")[PROVENANCE]
    assert len(starts) == 2 and starts[0] == first
    write_json(tmp_path / "config.json", {k: v for k, v in saved.items() if k != PROVENANCE})
    assert SubnetworkResult.load(tmp_path, tiny_model).config == config


def _known(pairs, template="isa_kind"):
    return [KnownTriplet(Triplet(h, "IsA", t), template, 1, -0.1, -0.1, True) for h, t in pairs]


def test_data_roles_never_share_a_fact_or_a_template(tiny_model):
    """Validation sees the target facts only on templates they are not trained on, and control facts of its own."""
    target = kg.TargetKG("t", _known(TARGET[:2], "isa_kind") + _known(TARGET[2:], "isa_article"))
    other = _other_templates(target, tiny_model.tokenizer)
    chosen = {t.triplet.head: t.template for t in target}
    assert len(other) == 4 and all(chosen[target.items[int(i)].triplet.head] != name
                                   for i, name in zip(other.item_index, other.templates))

    pool = kg.ControlKG("c", _known(CONTROL))
    val, new, train = _split(pool, (2, 3, 10))
    assert [len(val), len(new), len(train)] == [2, 3, 1]
    assert not ({*val.triplets} & {*new.triplets} or {*new.triplets} & {*train.triplets} or {*val.triplets} & {*train.triplets})


def test_data_seed_keeps_the_data_across_mask_seeds(tiny_model):
    """Two mask seeds on one ``data_seed`` see the same facts and text; without it the seed picks both."""
    same_data = [tiny_config(seed=s, data_seed=0) for s in (0, 1)]
    assert [c.sample_seed for c in same_data] == [0, 0] and tiny_config(seed=1).sample_seed == 1
    assert same_data[0].kg_key() == same_data[1].kg_key() != tiny_config(seed=1).kg_key()  # one cached fact set
    data = tiny_data(tiny_model)
    kg_parts = {n: getattr(data, n) for n in ("target", "control", "eval_kg", "val_kg", "facts")}
    built = [build_data(tiny_model, c, kg_parts) for c in (*same_data, tiny_config(seed=1))]
    assert torch.equal(built[0].lm, built[1].lm) and not torch.equal(built[0].lm, built[2].lm)
    assert built[0].val_lm.shape[0] == 2048 // 16 and not (set(map(tuple, built[0].val_lm.tolist())) & set(map(tuple, built[0].lm.tolist())))
    assert SubnetworkConfig.from_dict(same_data[1].to_dict()) == same_data[1]


@pytest.mark.real
def test_mask_for_another_model_is_refused(tiny_model, smollm2, tmp_path):
    mask = Mask(ModelShape.of(tiny_model), "neuron", {"blocks.1.mlp.hook_post": torch.zeros(96, dtype=torch.bool)})
    mask.save(tmp_path / "mask.safetensors")
    with pytest.raises(MaskMismatchError, match="made for"):
        Mask.load(tmp_path / "mask.safetensors", smollm2)
    with pytest.raises(MaskMismatchError, match="made for"):
        mask.remaining(smollm2)
    assert Mask.load(tmp_path / "mask.safetensors", tiny_model).n_removed() == 0


def test_bad_target_is_refused(tiny_model):
    with pytest.raises(kg.KGError):
        find_subnetwork(tiny_model, SubnetworkConfig(target="isa:"), progress=False)


@pytest.mark.real
def test_short_run_on_smollm2(smollm2, tmp_path):
    from torch.nn.utils import parametrize

    from circuitcut.data.corpora import corpus_windows

    target = isa_batch(smollm2, TARGET)
    control = isa_batch(smollm2, CONTROL)
    lm = corpus_windows("prose", smollm2.tokenizer, n_tokens=256, window=32, split="stats")
    data = SubnetworkData(target, control, lm, eval_kg={"target": target, "control": control},
                          eval_lm=corpus_windows("prose", smollm2.tokenizer, n_tokens=64, window=32, split="eval"),
                          val_kg={"target": isa_batch(smollm2, TARGET, "isa_article"), "control": control}, val_lm=lm[:2])
    config = SubnetworkConfig(steps=3, layers=(28, 29), neuron_kinds=("mlp",), window=32, lm_pool_tokens=256,
                              lm_batch=2, control_batch=4, random_seeds=1, log_every=1, validate_every=3)
    before = {n: p.detach().clone() for n, p in smollm2.named_parameters() if "blocks.29" in n}
    result = find_subnetwork(smollm2, config, tmp_path / "run", progress=False, data=data)
    assert [r["step"] for r in result.history] == [0, 1, 2]
    assert result.mask.n_units() == 2 * 1536
    assert result.metrics["original"]["target"]["top10"] > 50  # the model knows these facts
    assert {"target", "control", "lm"} == set(result.metrics["random"]["change"])
    assert all(torch.equal(p, before[n]) for n, p in smollm2.named_parameters() if n in before)
    assert not any(parametrize.is_parametrized(m) for m in smollm2.modules())


def test_missed_goals_name_each_bound_a_run_misses_with_its_value():
    def metrics(target_top10, control_new, sparsity=99.7):
        return {"sparsity": sparsity,
                "remaining": {"target": {"top10": target_top10}, "target_paraphrase": {"top10": 5.0}},
                "change": {"target": {"dppl": 250.0}, "control_new": {"dppl": control_new}, "lm": {"dppl": 0.3}}}

    assert missed_goals(metrics(10.0, 10.0)) == []  # the bounds are inclusive
    assert missed_goals(metrics(25.0, 12.5, sparsity=96.0)) == [
        "sparsity % 96.0", "target top-10 % 25.0", "ControlKG never seen dPPL % 12.5"]
    weights = metrics(5.0, 5.0, sparsity=98.0) | {"size": {"granularity": "weight"}}
    assert missed_goals(weights) == ["sparsity % 98.0"]  # weight masks answer to the paper's 98.6 %


def test_touched_neurons_are_the_owners_of_a_weight_subnetworks_feed_forward_weights(tiny_model):
    shape = ModelShape.of(tiny_model)
    sites = SubnetworkConfig(granularity="weight").sites(tiny_model)
    weights = {name: torch.zeros(size, dtype=torch.bool) for name, size in sites.items()}
    weights["blocks.1.mlp.in"][3, 0] = weights["blocks.1.mlp.gate"][3, 5] = True  # rows: neuron 3, twice
    weights["blocks.1.mlp.out"][10, 7] = True  # a column: neuron 7
    weights["blocks.1.attn.q"][0, 0] = True  # attention owns no feed-forward neuron
    neurons = Mask(shape, "weight", weights).touched_neurons()
    assert neurons.granularity == "neuron" and set(neurons.removed) == {"blocks.1.mlp.hook_post"}
    assert neurons.removed["blocks.1.mlp.hook_post"].nonzero().flatten().tolist() == [3, 7]
    with pytest.raises(ValueError, match="weight-level"):
        neurons.touched_neurons()


def test_seed_overlaps_pair_only_runs_that_differ_in_the_mask_seed(tiny_model):
    shape = ModelShape.of(tiny_model)
    sites = SubnetworkConfig().sites(tiny_model)

    def result(units, seed, target="isa:animal"):
        subnetwork = {name: torch.zeros(size, dtype=torch.bool) for name, size in sites.items()}
        first = next(iter(subnetwork))
        subnetwork[first][list(units)] = True
        config = SubnetworkConfig(target=target, seed=seed, data_seed=0)
        return SubnetworkResult(config, Mask(shape, "neuron", subnetwork), [], {})

    runs = {"a": result({0, 1, 2}, 0), "a, seed 1": result({1, 2, 3}, 1), "b": result({0, 1}, 1, target="isa:food")}
    text = seed_overlaps(runs)
    n = sum(math.prod(size) for size in sites.values())
    assert text.splitlines() == [  # 2 shared of 4: Jaccard 0.5; b has another target, so it pairs with neither
        f"- a vs a, seed 1 (mlp neurons, 3 and 3): Jaccard 0.500 (random sets of the same sizes {9 / n / (6 - 9 / n):.2g})"]


def _every_fact_known(model, triplets, **kwargs):
    """known_triplets without scoring: every fact known on its relation's first training template."""
    return [KnownTriplet(t, kg.templates_for(t.relation)[0].name, 1, -0.1, -0.1, True) for t in triplets]


@pytest.mark.parametrize("named_tails", ["keep", "drop"])
def test_build_kg_drops_facts_whose_tail_is_named_in_the_head_only_when_asked(tiny_model, monkeypatch, named_tails):
    monkeypatch.setattr(kg, "known_triplets", _every_fact_known)  # the filter acts before scoring
    config = SubnetworkConfig(target="isa:animal", named_tails=named_tails, n_candidates=300, control_candidates=300,
                              n_target=20, n_control=20, n_control_val=5, n_control_new=5)
    facts = build_kg(tiny_model, config)["facts"]
    rows = [f.split(" (rank")[0].split("|") for part in facts.values() for f in part]
    named = [(prompt, tail) for prompt, tail in rows if kg.Triplet(prompt, "IsA", tail).tail_named_in_head]
    assert (named == []) == (named_tails == "drop")


def test_training_every_target_template_validates_on_paraphrases_and_reports_as_before(tiny_model, monkeypatch):
    """``target_templates="train"``: suppression sees each fact on both IsA training templates, the rule
    its validation paraphrases (never trained on), the report the same chosen and held-out rows as ``chosen``."""
    monkeypatch.setattr(kg, "known_triplets", _every_fact_known)
    sizes = dict(target="isa:animal", n_candidates=50, control_candidates=100, n_target=6, n_control=10,
                 n_control_val=3, n_control_new=3)
    chosen, train = (build_kg(tiny_model, SubnetworkConfig(target_templates=t, **sizes)) for t in ("chosen", "train"))
    assert len(chosen["target"]) == 6 and set(chosen["val_kg"]["target"].templates) == {"isa_article"}
    assert len(train["target"]) == 12 and sorted(train["target"].item_index.tolist()) == sorted(list(range(6)) * 2)
    assert set(train["target"].templates) == {"isa_kind", "isa_article"}
    assert len(train["val_kg"]["target"]) == 12 and set(train["val_kg"]["target"].templates) == {"isa_sort", "isa_classified"}
    for name in ("target", "target_paraphrase", "control_new"):
        assert train["eval_kg"][name].prompts == chosen["eval_kg"][name].prompts
    for target in ("partof:vehicle.n.01", "any:animal"):
        with pytest.raises(kg.KGError, match="target_templates='chosen'"):
            check_target(SubnetworkConfig(target=target, target_templates="train"))
    assert check_target(SubnetworkConfig(target="partof:vehicle.n.01")).relation == "PartOf"


def test_resuming_a_run_started_before_early_stopping_is_refused_naming_the_settings(tiny_model, tmp_path):
    """A config.json without the fields added since (early stop, learning rate scaled to the run) reads as
    the behaviour that run had, so the new defaults differ from it, by name; the prefix cache, which changes
    only the time, reads as on."""
    from circuitcut.runs import read_json, write_json

    config, data = tiny_config(steps=2, validate_every=2, random_seeds=1), tiny_data(tiny_model)
    find_subnetwork(tiny_model, config, tmp_path / "old", progress=False, data=data)
    saved = read_json(tmp_path / "old" / "config.json")
    for name in ("early_stop", "early_stop_change", "lr_steps", "prefix_cache_mb"):
        saved.pop(name)
    write_json(tmp_path / "old" / "config.json", saved)
    with pytest.raises(ValueError, match=r"\(early_stop: saved null, asked 2; lr_steps: saved null, asked 150\)"):
        find_subnetwork(tiny_model, config, tmp_path / "old", progress=False, data=data)
    old = tiny_config(steps=2, validate_every=2, random_seeds=1, early_stop=None, lr_steps=None)
    assert SubnetworkResult.load(tmp_path / "old").config == old  # the old run loads as what it was
    assert find_subnetwork(tiny_model, old, tmp_path / "old", progress=False).config == old  # and continues so


def test_a_run_that_stops_early_says_so_and_times_the_steps_it_took(tiny_model):
    config = tiny_config(steps=20, validate_every=2, early_stop=2)  # the rule holds from the first validation here
    result = find_subnetwork(tiny_model, config, progress=False, data=tiny_data(tiny_model))
    sel = result.metrics["selection"]
    assert (sel["steps_run"], sel["stopped_early"]) == (4, True)
    assert result.metrics["seconds"]["per_step"] == pytest.approx(result.metrics["seconds"]["train"] / 4)
    assert "training stopped early after step 4" in format_report(result.metrics)
    assert result.metrics["prefix"]["used"] and result.metrics["prefix"]["megabytes"] > 0

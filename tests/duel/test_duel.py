"""The duel on the tiny model: every method on both tasks into one folder, its table, resuming, the planted
neuron found by selective pruning on the knowledge task, and bad settings refused before anything slow."""

from __future__ import annotations

import json

import pytest
import torch

import circuitcut
from circuitcut import plots
from circuitcut.cli import main
from circuitcut.duel import DuelConfig, Task, duel_caption, duel_markdown, duel_table, points_frame, run_duel, windows_as_facts
from circuitcut.duel import methods as duel_methods
from circuitcut.duel import run as duel_run
from circuitcut.duel.methods import blank_mask, selective_masks
from circuitcut.duel.report import COLUMNS
from circuitcut.subnetwork.data import SubnetworkData
from pruning_helpers import planted_data as corpus_windows
from subnetwork_helpers import NEURON, planted_data

TINY = dict(layers=(1,), sizes=(2, 4), steps=2, greedy_steps=2, greedy_per_step=1, greedy_candidates=2,
            random_seeds=2, corpus_window=16, corpus_tokens=128)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def planted(planted_dir):
    return circuitcut.load_model(str(planted_dir), device="cpu")


@pytest.fixture()
def duel(planted, tmp_path):
    config = DuelConfig(**TINY)
    result = run_duel(planted, config, tmp_path / "duel", knowledge=planted_data(), corpus=corpus_windows(),
                      progress=False)
    return planted, config, tmp_path / "duel", result


def test_the_duel_runs_every_method_on_both_tasks_into_one_table(duel):
    _, _, folder, result = duel
    table = duel_table(result)
    assert list(table.columns) == list(COLUMNS)
    pairs = sorted(zip(table["task"], table["method"]))
    assert pairs == sorted((t, m) for t in ("knowledge", "corpus")
                           for m in ("learned", "selective", "random", "learned_ranked", "greedy"))
    points = points_frame(result)
    for task in ("knowledge", "corpus"):
        learned = int(points.query("task == @task and method == 'learned'")["units"].iloc[0])
        selective = sorted(points.query("task == @task and method == 'selective'")["units"])
        assert selective == sorted({2, 4, learned} - {0})  # the duel's sizes and the learned mask's
        assert sorted(points.query("task == @task and method == 'learned_ranked'")["units"]) == selective
        ranked = [circuitcut.Mask.load(folder / task / "learned_ranked" / f"mask_{n}.safetensors") for n in selective]
        assert all(((a - b).n_removed() == 0) for a, b in zip(ranked, ranked[1:]))  # one ranking: each in the next
        assert list(points.query("task == @task and method == 'greedy'")["units"]) == [1, 2]
        assert (folder / task / "selective" / "mask_4.safetensors").exists()
    corpus = table[table["task"] == "corpus"]
    assert (corpus["selectivity"] == corpus["target"] - corpus["control"]).all()
    assert table[table["task"] == "knowledge"]["selectivity"].isna().all()
    assert not table[["target", "control", "random_target", "random_control"]].isna().any().any()
    markdown = duel_markdown(result)
    assert markdown.count("\n") == 1 + len(table) and "| corpus | random |" in markdown
    figure = plots.duel_scatter(result)
    assert {t.name for t in figure.data} == {"learned", "selective", "random", "learned_ranked", "greedy"}
    caption = duel_caption(result)
    learned = table[(table["task"] == "corpus") & (table["method"] == "learned")].iloc[0]
    assert f"learned ({learned['units']:,} neurons) {learned['target']:+.1f} / {learned['control']:+.1f}, " in caption


def test_a_resumed_duel_loads_finished_cells_and_reruns_only_the_missing_one(duel, monkeypatch):
    model, config, folder, result = duel
    (folder / "corpus" / "greedy" / "points.json").unlink()

    def refuse(*args, **kwargs):
        raise AssertionError("a finished cell was recomputed")

    monkeypatch.setattr(duel_methods, "find_subnetwork", refuse)
    monkeypatch.setattr(duel_run, "selective_masks", refuse)
    again = run_duel(model, config, folder, knowledge=planted_data(), corpus=corpus_windows(), progress=False)
    assert again.points == result.points  # the greedy cell recomputed, the same masks and numbers
    with pytest.raises(ValueError, match="sizes: saved"):
        run_duel(model, DuelConfig(**{**TINY, "sizes": (3,)}), folder, knowledge=planted_data(),
                 corpus=corpus_windows(), progress=False)


def test_weight_masks_add_a_learned_weight_row_on_each_task(planted, tmp_path):
    config = DuelConfig(**TINY, weight_masks=True)
    result = run_duel(planted, config, tmp_path / "duel", knowledge=planted_data(), corpus=corpus_windows(),
                      progress=False)
    points = points_frame(result)
    weights = points[points["method"] == "learned_weights"]
    assert sorted(weights["task"]) == ["corpus", "knowledge"] and (weights["granularity"] == "weight").all()
    assert (points[points["method"] != "learned_weights"]["granularity"] == "neuron").all()
    for task in ("knowledge", "corpus"):
        saved = circuitcut.Mask.load(next((tmp_path / "duel" / task / "learned_weights").glob("mask_*.safetensors")))
        assert saved.granularity == "weight" and saved.n_removed() == int(weights[weights["task"] == task]["units"].iloc[0])
    assert "learned_weights" in set(duel_table(result)["method"])
    assert "learned_weights" in {t.name for t in plots.duel_scatter(result).data}


def test_selective_pruning_finds_the_planted_fact_neuron_and_beats_random_masks(planted):
    data = planted_data()
    task = Task.knowledge(data)
    config = DuelConfig(layers=(1,), sizes=(1,))
    (mask,) = selective_masks(planted, task, blank_mask(planted, config), [1], "abs")
    assert mask.removed["blocks.1.mlp.hook_post"].nonzero().flatten().tolist() == [NEURON]
    point = task.evaluate(planted, mask, task.original(planted), random_seeds=3)
    assert point["units"] == 1
    assert point["target"] > 1000 and point["random_target"] < 1  # the fact is gone; random neurons leave it
    assert abs(point["control"]) < 1 and point["target_top10"] == 0


def test_windows_as_facts_cut_each_window_before_one_of_its_tokens():
    windows = torch.arange(40).reshape(4, 10)
    facts = windows_as_facts(windows, seed=0)
    for row in range(4):
        cut = int(facts.predict_pos[row]) + 1
        assert cut >= 4
        assert facts.tokens[row, :cut].tolist() == windows[row, :cut].tolist()
        assert int(facts.tail_token[row]) == int(windows[row, cut])


def test_the_corpus_task_trains_on_forget_windows_and_keeps_retain_text():
    data = corpus_windows()
    task = Task.corpus(data, seed=0)
    sub: SubnetworkData = task.subnetwork_data
    sub.check()
    assert len(sub.target) == len(data.forget_stats[0::2]) and len(sub.val_kg["target"]) == len(data.forget_stats[1::2])
    assert sub.lm.tolist() == data.retain_stats[1::3].tolist()
    assert (sub.target.tokens[sub.target.attention_mask.bool()] < 400).all()  # forget tokens (0-400) only
    assert (sub.control.tokens[sub.control.attention_mask.bool()] >= 400).all()


@pytest.mark.parametrize(("flags", "message"), [
    (["--sizes", "0"], "--sizes"),
    (["--greedy-per-step", "5", "--greedy-candidates", "2"], "--greedy-candidates=2"),
    (["--forget", "prose"], "--forget and --retain are both"),
    (["--target", "nonsense"], "nonsense"),
    (["--corpus-tokens", "100"], "--corpus-tokens=100"),
])
def test_bad_settings_are_refused_by_name_before_the_model_loads(flags, message, tmp_path, capsys):
    missing = tmp_path / "no-model"  # loading it would fail with another message
    assert main(["duel", "--model", str(missing), "--out", str(tmp_path / "d"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "no-model" not in err


def test_duel_help_lists_every_field_in_its_group():
    import circuitcut.cli as cli

    text = cli.commands(cli.build_parser(width=100))["duel"].format_help()
    for heading in ("tasks:", "methods:", "run:"):
        assert heading in text
    for flag in ("--target", "--sizes", "--greedy-candidates", "--weight-masks", "--random-seeds", "--resume"):
        assert flag in text


def test_config_round_trips_through_its_folder_file(tmp_path):
    config = DuelConfig(**TINY)
    saved = json.loads(json.dumps({**config.to_dict(), "model": "tiny"}))
    assert DuelConfig.from_dict(saved) == config

import json

from circuitcut.cli import main
from circuitcut.masks import NeuronMask
from circuitcut.pruning import PruningResult


def test_info_lists_the_neuron_sites(tiny_model_dir, capsys):
    assert main(["info", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert "blocks.L.mlp.hook_post" in out and "2 key/value" in out and "96 per layer" in out


def test_prune_writes_history_masks_and_config_then_resumes(tiny_model, tiny_model_dir, tmp_path, capsys):
    args = ["prune", "--model", str(tiny_model_dir), "--device", "cpu", "--forget", "python", "--retain", "prose",
            "--sites", "mlp,attn_v", "--steps", "2", "--frac", "0.05", "--tokens", "256", "--window", "32",
            "--out", str(tmp_path / "run")]
    assert main(args) == 0
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [(h["method"], h["step"]) for h in history] == [
        ("original", 0), ("selective", 1), ("selective", 2), ("random", 1), ("random", 2)]
    assert {"top1", "top10", "top1_skip", "loss"} <= set(history[-1]["forget"])
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["sites"] == ["mlp", "attn_v"] and config["forget"] == "python"
    mask = NeuronMask.load(tmp_path / "run" / "selective_mask.safetensors", tiny_model)
    assert mask.fraction()["mlp"] > 0
    assert "selectivity (selective)" in capsys.readouterr().out
    # The same command again is refused; with --resume it finds nothing left to do.
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    assert len(PruningResult.load(tmp_path / "run").history) == len(history)


def test_bad_input_is_one_clear_line(tiny_model_dir, tmp_path, capsys):
    base = ["prune", "--model", str(tiny_model_dir), "--out", str(tmp_path / "x")]
    for extra, message in [
        (["--sites", "mlp,ffn"], "Unknown site kind"),
        (["--frac", "0"], "outside (0, 1]"),
        (["--forget", "prose", "--retain", "prose"], "two different corpora"),
        (["--forget", "no-such-corpus"], "no-such-corpus"),
    ]:
        assert main([*base, *extra, "--tokens", "256", "--window", "32"]) == 2
        last_line = capsys.readouterr().err.strip().splitlines()[-1]
        assert last_line.startswith("circuitcut prune: error:") and message in last_line


def test_demo_prints_selectivity_and_writes_plots(tiny_model_dir, tmp_path, capsys):
    args = ["demo", "--model", str(tiny_model_dir), "--device", "cpu", "--steps", "1", "--tokens", "256",
            "--window", "32", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "neuron sites" in out and "selectivity (selective)" in out and "selectivity (random)" in out
    assert {p.name for p in tmp_path.glob("*.html")} == {"pruning_curves.html", "drop_curves.html",
                                                        "neurons_per_layer.html"}
    assert main(args) == 0  # a second demo resumes its finished run instead of refusing the folder

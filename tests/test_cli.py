import dataclasses
import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from circuitcut.cli import main
from circuitcut.masks import Mask
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
    mask = Mask.load(tmp_path / "run" / "selective_mask.safetensors", tiny_model)
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
        (["--forget", "pyhton"], "Did you mean 'python'?"),
        (["--forget", str(tmp_path / "no" / "such.txt")], "such.txt' does not exist"),
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


def _no_model(*args, **kwargs):
    raise AssertionError("the model must not load before the arguments are checked")


def test_an_out_path_that_is_a_file_is_refused_before_loading(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """It failed with a bare '[Errno 17] File exists' after the model and data had loaded."""
    import circuitcut.models

    monkeypatch.setattr(circuitcut.models, "load_model", _no_model)
    (tmp_path / "taken").write_text("a file")
    for command in (["prune", "--tokens", "256"], ["demo"], ["subnet"]):
        assert main([*command, "--model", str(tiny_model_dir), "--out", str(tmp_path / "taken")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "it is a file. Give a folder path" in err[0]


@pytest.fixture()
def subnet_config(monkeypatch):
    """The config ``circuitcut subnet`` would run (no model is loaded, nothing is trained)."""
    import circuitcut.models
    import circuitcut.subnetwork

    seen = {}

    def fake_find(model, config, out):
        seen["config"] = config
        raise RuntimeError("stop here")

    monkeypatch.setattr(circuitcut.models, "load_model", lambda *a, **k: None)
    monkeypatch.setattr(circuitcut.subnetwork, "find_subnetwork", fake_find)
    return seen


def test_subnet_passes_the_flags_a_too_small_target_names(tmp_path, subnet_config):
    assert main(["subnet", "--target", "isa:planet", "--min-target", "2", "--n-candidates", "50",
                 "--out", str(tmp_path / "s")]) == 2
    assert (subnet_config["config"].min_target, subnet_config["config"].n_candidates) == (2, 50)


def test_prune_reports_files_read_in_the_fallback_encoding(tiny_model_dir, tmp_path, capsys):
    """A non-UTF-8 file inside a folder was skipped without a word."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(40):
        (docs / f"{i:02d}.txt").write_text(f"Document {i}. " + "words of text " * 40)
    (docs / "old.h").write_bytes("/* M\xfcller */ int x;\n".encode("latin-1"))
    args = ["prune", "--model", str(tiny_model_dir), "--device", "cpu", "--forget", str(docs), "--retain", "prose",
            "--steps", "1", "--frac", "0.05", "--tokens", "256", "--window", "32", "--no-baseline",
            "--out", str(tmp_path / "run")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"forget corpus {docs}: 1 of 41 files" in out and "read as latin-1: old.h" in out
    notes = json.loads((tmp_path / "run" / "corpora.json").read_text())
    assert notes["retain"] == [] and "old.h" in notes["forget"][0]


def test_subnet_takes_every_config_field_over_a_preset(tmp_path, subnet_config):
    assert main(["subnet", "--preset", "paper", "--lr", "0.3", "--layers", "27-29", "--suppress-rank", "none",
                 "--neuron-kinds", "mlp", "--suppression", "margin", "--out", str(tmp_path / "s")]) == 2
    config = subnet_config["config"]
    assert (config.lr, config.layers, config.suppress_rank, config.neuron_kinds, config.suppression) == (
        0.3, (27, 28, 29), None, ("mlp",), "margin")
    assert (config.init_p, config.sparsity) == (0.45, "mean")  # the rest is the preset's


def test_subnet_continues_a_run_folder_only_with_resume(tmp_path, capsys):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert main(["subnet", "--out", str(folder)]) == 2
    assert "already holds a run: pass --resume" in capsys.readouterr().err


# The front door: --version, a fast plain --help, --debug, errors in the user's words, docs/cli.md.

ROOT = Path(__file__).resolve().parent.parent


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_version_names_the_installed_package(capsys):
    assert _help(["--version"], capsys).strip() == f"circuitcut {importlib.metadata.version('circuitcut')}"


def test_help_imports_no_torch():
    """``circuitcut --help`` took 5.4 s: importing the command line imported torch and TransformerLens."""
    script = ("import contextlib, io, sys\n"
              "import circuitcut.cli\n"
              "for argv in (['--help'], ['subnet', '--help']):\n"
              "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
              "        circuitcut.cli.main(argv)\n"
              "print(sorted({'torch', 'transformer_lens', 'transformers'} & set(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_subnet_help_is_grouped_plain_and_shows_the_presets_defaults(capsys, monkeypatch):
    from circuitcut.subnetwork.config import PRESETS

    monkeypatch.setitem(PRESETS, "default", {"steps": 7})
    text = _help(["subnet", "--help"], capsys)
    headings = [line[:-1] for line in text.splitlines() if re.fullmatch(r"[a-z]+:", line)]
    assert headings == ["options", "data", "mask", "schedule", "losses", "selection", "run"]
    assert "``" not in text and not re.search(r"--[\w-]+ X\b", text)
    assert re.search(r"--steps N +optimisation steps \(default: 7\)", text)  # the preset's, not the field's 150
    assert "--layers L1,L2|A-B|none" in text and "--lr FLOAT" in text and "--target TARGET" in text


def test_subnet_flag_help_is_one_short_line_of_the_field_docstring():
    """The help was each field's whole docstring: design reasoning and measurements, in reST."""
    from circuitcut.cli import build_parser, commands
    from circuitcut.subnetwork.config import SubnetworkConfig

    fields = {f.name for f in dataclasses.fields(SubnetworkConfig)}
    helps = {a.dest: a.help for a in commands(build_parser())["subnet"]._actions if a.dest in fields}
    assert set(helps) == fields
    long = {name: text for name, text in helps.items() if len(text.split(" (default: ")[0]) > 100}
    assert not long


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_raises_where_the_default_prints_one_line(where, tmp_path, capsys):
    args = ["subnet", "--min-target", "0", "--out", str(tmp_path / "s")]
    assert main(args) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    with pytest.raises(ValueError, match="--min-target must be positive"):
        main(["--debug", *args] if where == "before" else [*args, "--debug"])


def test_a_config_error_names_the_flag(tmp_path, capsys):
    assert main(["subnet", "--n-target", "3", "--min-target", "4", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "circuitcut subnet: error: --n-target (3) is below --min-target (4)."


@pytest.mark.parametrize("name", ["absolute", "./relative"])
def test_a_missing_local_model_folder_is_named_before_the_hub_is_asked(name, tmp_path, capsys, monkeypatch):
    """It answered with the hub's repo-id error."""
    import circuitcut.models

    monkeypatch.setattr(circuitcut.models, "_hub_checkpoint", _no_model)
    monkeypatch.chdir(tmp_path)
    model = str(tmp_path / "no-such-model") if name == "absolute" else "./no-such-model"
    assert main(["info", model]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"Model folder '{model}' does not exist" in err[0] and "embedded name" in err[0]


def test_docs_cli_md_is_current():
    from circuitcut.cli_docs import reference_markdown

    path = ROOT / "docs" / "cli.md"
    assert path.exists() and path.read_text() == reference_markdown(), (
        "docs/cli.md differs from the parsers: run `python -m circuitcut.cli_docs` in the repository root")


def test_the_package_names_load_on_first_use():
    import circuitcut
    import circuitcut.pruning
    import circuitcut.subnetwork

    for package in (circuitcut, circuitcut.pruning, circuitcut.subnetwork):
        assert all(getattr(package, name) is not None for name in package.__all__)
        assert set(package.__all__) <= set(dir(package))
    with pytest.raises(AttributeError):
        circuitcut.no_such_name  # noqa: B018


@pytest.mark.parametrize("command", ["prune", "demo"])
def test_every_pruning_field_is_a_flag_whose_default_is_the_configs(command):
    """The prune flags were written by hand beside PruningConfig: eps and skip_common had none, and every
    default was written twice."""
    from circuitcut.cli import DEMO, _pruning_config, build_parser, commands
    from circuitcut.pruning.config import PruningConfig

    fields = {f.name for f in dataclasses.fields(PruningConfig)}
    parser = commands(build_parser())[command]
    assert fields <= {a.dest for a in parser._actions}
    defaults = DEMO if command == "demo" else {}
    assert _pruning_config(parser.parse_args([]), defaults) == PruningConfig(**defaults)
    given = parser.parse_args(["--sites", "mlp,attn_v", "--eps", "mlp=0.01,attn_v=0.002", "--no-baseline",
                               "--one-shot", "--fill", "mean", "--skip-common", "7"])
    config = _pruning_config(given, defaults)
    assert config.sites == ("mlp", "attn_v") and config.eps == {"mlp": 0.01, "attn_v": 0.002}
    assert (config.baseline, config.one_shot, config.fill, config.skip_common) == (False, True, "mean", 7)
    assert config.steps == PruningConfig(**defaults).steps
    per_kind = _pruning_config(parser.parse_args(["--sites", "mlp,heads", "--frac", "mlp=0.02,heads=0.1",
                                                  "--head-score", "mean"]), defaults)
    assert (per_kind.sites, per_kind.frac, per_kind.head_score) == (("mlp", "heads"), {"mlp": 0.02, "heads": 0.1}, "mean")
    assert _pruning_config(parser.parse_args(["--frac", "0.03"]), defaults).frac == 0.03


def test_a_pruning_config_error_names_the_flag(tmp_path, capsys):
    assert main(["prune", "--steps", "60", "--out", str(tmp_path / "p")]) == 2
    assert "a smaller --frac" in capsys.readouterr().err
    assert main(["prune", "--sites", "mlp,heads", "--frac", "mlp=0.02", "--out", str(tmp_path / "p")]) == 2
    assert "add heads=FLOAT to --frac" in capsys.readouterr().err

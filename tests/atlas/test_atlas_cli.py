"""``circuitcut atlas``: the tree of targets without a model, packing, and bad input as one line naming the fix."""

from __future__ import annotations

from circuitcut.atlas import load
from circuitcut.atlas.store import MASKS, RUNS, finished_runs, pack_atlas
from circuitcut.cli import main


def test_targets_prints_the_default_tree(capsys):
    assert main(["atlas", "targets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["isa:animal.n.01", "  isa:mammal.n.01", "    isa:dog.n.01"]


def test_pack_writes_an_atlas_that_loads(atlas_runs, tmp_path, capsys):
    assert main(["atlas", "pack", str(atlas_runs), "--to", str(tmp_path)]) == 0
    assert f"packed 5 runs into {tmp_path}" in capsys.readouterr().out
    assert (tmp_path / MASKS).exists() and (tmp_path / RUNS).exists() and len(load(tmp_path).runs) == 5


def test_bad_input_is_one_line_naming_the_flag(tmp_path, capsys):
    assert main(["atlas", "build", "--out", str(tmp_path), "--granularity", "weights"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "circuitcut atlas: error: --granularity must be one or more of weight, neuron, got weights."
    assert main(["atlas", "build", "--out", str(tmp_path), "--targets", "isa:no-such-thing"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Unknown WordNet synset 'no-such-thing'" in err[0]
    assert main(["atlas", "pack", str(tmp_path)]) == 2
    assert "No finished run folders to pack" in capsys.readouterr().err


def test_the_atlas_names_load_on_first_use():
    import circuitcut.atlas

    assert all(getattr(circuitcut.atlas, name) is not None for name in circuitcut.atlas.__all__)
    assert set(circuitcut.atlas.__all__) <= set(dir(circuitcut.atlas))


def test_verify_reproduces_an_entry_on_its_model(atlas_dir, tiny_model_dir, capsys):
    assert main(["atlas", "verify", "food.n.01", "--granularity", "neuron", "--atlas", str(atlas_dir),
                 "--model", str(tiny_model_dir), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("isa:food.n.01 neuron seed 0: target dPPL stored") and "reproduced within 1 %" in out


def test_verify_names_an_entry_the_atlas_lacks_before_loading_a_model(atlas_dir, tmp_path, capsys):
    missing = str(tmp_path / "no-model")
    assert main(["atlas", "verify", "isa:tree.n.01", "--atlas", str(atlas_dir), "--model", missing]) == 2
    err = capsys.readouterr().err
    assert "'isa:tree.n.01' is not in the atlas" in err and "no-model" not in err
    assert main(["atlas", "verify", "food.n.01", "--seed", "3", "--atlas", str(atlas_dir), "--model", missing]) == 2
    assert "not weight seed 3" in capsys.readouterr().err


def test_compare_ships_comparisons_beside_the_atlas_and_draws_its_figures(atlas_runs, tiny_model_dir, tmp_path,
                                                                          capsys):
    atlas_dir = tmp_path / "atlas"
    assert main(["atlas", "pack", str(atlas_runs), "--to", str(atlas_dir)]) == 0
    assert main(["atlas", "compare", "--atlas", str(atlas_dir), "--granularity", "neuron", "--model",
                 str(tiny_model_dir), "--threads", "1", "--figures", str(tmp_path / "figures"), "--no-png"]) == 0
    out = capsys.readouterr().out
    assert "Targets compared: 3." in out and "jaccard vs distance: Spearman rho" in out
    assert out.count("| isa:") == 3 and "| target | units (sparsity %) |" in out
    saved = load(atlas_dir).comparisons("neuron")
    assert saved.granularity == "neuron" and saved.excess().shape == (3, 3)
    assert list(saved.containment.child) == ["isa:mammal.n.01"] and list(saved.containment.parent) == ["isa:animal.n.01"]
    captions = (tmp_path / "figures" / "CAPTIONS.md").read_text()
    for name in ("atlas_cross_criticality_neuron", "atlas_tree_neuron"):  # beside the weight masks' figures
        assert (tmp_path / "figures" / f"{name}.html").exists() and f"- `{name}.png`: " in captions
    assert "3 families, neuron masks: each cell is the TargetKG dPPL of the column's facts" in captions
    assert (tmp_path / "figures" / "atlas_neuron_map.html").exists()
    held = {f"{site}:{n}" for t in saved.jaccard.index for site, m in load(atlas_dir).mask(t, "neuron").removed.items()
            for n in m.nonzero().flatten().tolist()}
    assert set(saved.contexts) == held  # the tiny runs' few steps leave their masks nearly empty: see test_findings

    # --saved draws the same from the saved comparisons, with no model (this path holds none)
    assert main(["atlas", "compare", "--atlas", str(atlas_dir), "--granularity", "neuron", "--saved", "--model",
                 str(tmp_path / "no-model"), "--figures", str(tmp_path / "again"), "--no-png"]) == 0
    assert capsys.readouterr().out.split("wrote")[0] == out.split("wrote")[0].split("\n", 1)[1]  # after "packed"
    assert (tmp_path / "again" / "atlas_tree_neuron.html").exists()
    # packed again with fewer runs, the saved comparisons no longer describe it: refused with the fix
    pack_atlas([f for f in finished_runs(atlas_runs) if "mammal" not in f.name], atlas_dir)
    assert main(["atlas", "compare", "--atlas", str(atlas_dir), "--granularity", "neuron", "--saved",
                 "--figures", str(tmp_path / "again"), "--no-png"]) == 2
    assert "cover 3 targets, the atlas 2 (it was packed again since): compute them again" in capsys.readouterr().err


def test_compare_names_a_granularity_the_atlas_lacks_before_loading_a_model(atlas_dir, tmp_path, capsys):
    assert main(["atlas", "compare", "--atlas", str(atlas_dir), "--seed", "4", "--model", str(tmp_path / "no-model"),
                 "--figures", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert "holds no weight masks under seed 4" in err and "no-model" not in err

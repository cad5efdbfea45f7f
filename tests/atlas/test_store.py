"""The atlas format and load(): runs packed from tiny run folders read back exactly; bad input is one clear error."""

from __future__ import annotations

import gzip
import json
import shutil

import pytest
import torch
from safetensors import safe_open

from circuitcut.atlas import AtlasError, load
from circuitcut.atlas.store import MASKS, RUNS, finished_runs
from circuitcut.masks import MaskMismatchError
from circuitcut.subnetwork import SubnetworkConfig, SubnetworkResult, format_report


def test_the_atlas_holds_every_run_and_its_masks_exactly(atlas_runs, atlas_dir):
    atlas = load(atlas_dir)
    assert atlas.targets == ["isa:animal.n.01", "isa:food.n.01", "isa:mammal.n.01"]
    assert len(atlas.runs) == 5
    for folder in finished_runs(atlas_runs):
        saved = SubnetworkResult.load(folder)
        c = saved.config
        mask = atlas.mask(c.target, c.granularity, c.seed)
        assert (mask.granularity, mask.shape) == (saved.mask.granularity, saved.mask.shape)
        assert mask.removed.keys() == saved.mask.removed.keys()
        assert all(torch.equal(mask.removed[n], m) for n, m in saved.mask.removed.items())
        assert atlas.report(c.target, c.granularity, c.seed) == format_report(saved.metrics)
        run = atlas.run(c.target, c.granularity, c.seed)
        assert SubnetworkConfig.from_dict(run["config"]) == c and run["provenance"][0]["command"]
        assert atlas.facts(c.target, c.granularity, c.seed)[0].endswith("(rank 1, ppl 2.0)")
    assert {"date", "command", "circuitcut"} <= set(atlas.index["provenance"])


def test_a_target_may_be_named_without_its_relation(atlas_dir):
    atlas = load(atlas_dir)
    assert torch.equal(atlas.mask("food.n.01", "neuron").removed["blocks.1.mlp.hook_post"],
                       atlas.mask("isa:food.n.01", "neuron").removed["blocks.1.mlp.hook_post"])


def test_masks_are_stored_as_the_indices_of_their_removed_units(atlas_runs, atlas_dir):
    """The sparse format's promise: four bytes per removed unit and nothing for a site that removes none."""
    removed = sum(SubnetworkResult.load(f).mask.n_removed() for f in finished_runs(atlas_runs))
    stored = 0
    with safe_open(str(atlas_dir / MASKS), "pt") as f:
        for key in f.keys():
            t = f.get_tensor(key)
            assert t.dtype == torch.int32 and t.numel() > 0 and torch.all(t[1:] > t[:-1])
            stored += t.numel()
    assert stored == removed
    header = int.from_bytes((atlas_dir / MASKS).read_bytes()[:8], "little")
    assert (atlas_dir / MASKS).stat().st_size == 8 + header + 4 * removed


def test_to_frame_is_one_row_per_run_with_every_dppl_and_top10(atlas_dir):
    atlas = load(atlas_dir)
    frame = atlas.to_frame()
    assert len(frame) == 5
    assert set(frame.groupby("granularity").size().items()) == {("neuron", 3), ("weight", 2)}
    datasets = atlas.run("isa:food.n.01", "neuron")["metrics"]["change"]
    for name in datasets:
        assert {f"dppl_{name}", f"dppl_random_{name}", f"top10_{name}"} <= set(frame.columns)
    row = frame[(frame.target == "isa:food.n.01") & (frame.granularity == "neuron")].iloc[0]
    metrics = atlas.run("isa:food.n.01", "neuron")["metrics"]
    assert row["dppl_target"] == metrics["change"]["target"]["dppl"]
    assert row["units"] == metrics["size"]["n_subnetwork"] and row["sparsity"] == metrics["sparsity"]
    assert row["bounds_met"] == (row["goals_missed"] == "")


def test_a_target_not_in_the_atlas_lists_those_it_holds(atlas_dir):
    atlas = load(atlas_dir)
    with pytest.raises(AtlasError, match=r"'isa:cat' is not in the atlas .*; it holds isa:animal.n.01, isa:food.n.01, "
                                         r"isa:mammal.n.01\. To add it: `circuitcut atlas build --targets isa:cat"):
        atlas.mask("isa:cat")
    with pytest.raises(AtlasError, match="holds isa:food.n.01 as neuron seed 0, not weight seed 0"):
        atlas.report("isa:food.n.01")


def test_a_mask_applied_to_another_model_is_refused(atlas_dir, tiny_model_dir, tmp_path):
    import circuitcut
    from transformers import LlamaForCausalLM

    hf = LlamaForCausalLM.from_pretrained(tiny_model_dir)
    hf.model.layers = hf.model.layers[:1]
    hf.config.num_hidden_layers = 1
    hf.save_pretrained(tmp_path / "other")
    for f in tiny_model_dir.glob("*token*"):
        shutil.copy(f, tmp_path / "other" / f.name)
    other = circuitcut.load_model(str(tmp_path / "other"), device="cpu")
    atlas = load(atlas_dir)
    with pytest.raises(MaskMismatchError, match="Load the model the mask was made for"):
        atlas.mask("isa:animal.n.01", model=other)
    with pytest.raises(MaskMismatchError, match="Load the model the mask was made for"):
        atlas.mask("isa:animal.n.01").remaining(other)


def _copy(atlas_dir, tmp_path):
    shutil.copytree(atlas_dir, tmp_path / "copy")
    return tmp_path / "copy"


@pytest.mark.parametrize("damage", ["truncated index", "not gzip", "masks changed", "masks missing"])
def test_a_damaged_atlas_names_the_file_and_the_fix(atlas_dir, tmp_path, damage):
    folder = _copy(atlas_dir, tmp_path)
    index, masks = folder / RUNS, folder / MASKS
    if damage == "truncated index":
        index.write_bytes(index.read_bytes()[:-20])
    elif damage == "not gzip":
        index.write_text("{}")
    elif damage == "masks changed":
        data = bytearray(masks.read_bytes())
        data[-1] ^= 1
        masks.write_bytes(bytes(data))
    else:
        masks.unlink()
    broken = masks if damage.startswith("masks") else index
    with pytest.raises(AtlasError, match=rf"The atlas file {broken} is damaged .*: rebuild it with `circuitcut atlas "
                                         r"pack RUNS_DIR` or reinstall circuitcut\."):
        load(folder)


def test_a_missing_atlas_and_a_later_format_say_what_to_do(atlas_dir, tmp_path):
    with pytest.raises(AtlasError, match="No atlas in .*: make one with `circuitcut atlas build"):
        load(tmp_path)
    folder = _copy(atlas_dir, tmp_path)
    index = json.loads(gzip.decompress((folder / RUNS).read_bytes()))
    (folder / RUNS).write_bytes(gzip.compress(json.dumps({**index, "format": 99}).encode()))
    with pytest.raises(AtlasError, match="format 99; this circuitcut reads format 1: upgrade circuitcut"):
        load(folder)


def test_loading_and_the_frame_import_no_torch(atlas_dir):
    import subprocess
    import sys

    script = (f"import sys, circuitcut.atlas\natlas = circuitcut.atlas.load({str(atlas_dir)!r})\n"
              "frame = atlas.to_frame()\n"
              "print(len(frame), sorted({'torch', 'transformer_lens'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "5 []"

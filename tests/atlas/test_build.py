"""Building an atlas: one folder per run, finished ones kept, interrupted ones resumed, failures named; the config's
checks; the default targets' structure."""

from __future__ import annotations

import pytest

from atlas_helpers import TINY_RUN, tiny_target_data
from circuitcut.atlas import DEFAULT_TARGETS, AtlasConfig, build_atlas, check_targets
from circuitcut.atlas.config import run_config, run_name
from circuitcut.atlas.hierarchy import parents, synset_name
from circuitcut.atlas.targets import format_checks
from circuitcut.subnetwork import SubnetworkResult


def _fail_on_food(model, config):
    if "food" in config.target:
        raise ValueError("no food here")
    return tiny_target_data(model, config)


def test_a_build_keeps_finished_runs_resumes_the_rest_and_names_failures(tiny_model, tmp_path):
    config = AtlasConfig(targets=("isa:animal.n.01", "isa:food.n.01"), granularity=("neuron",))
    with pytest.raises(RuntimeError, match=r"1 of 2 atlas runs failed \(food.n.01-neuron-seed0: ValueError: no food "
                                           r"here\)\. The finished ones are kept"):
        build_atlas(config, tmp_path, model=tiny_model, overrides=TINY_RUN, data=_fail_on_food, progress=False)
    animal = tmp_path / "animal.n.01-neuron-seed0"
    assert (animal / "metrics.json").exists() and not (tmp_path / "food.n.01-neuron-seed0" / "metrics.json").exists()
    finished = (animal / "metrics.json").stat().st_mtime_ns
    folders = build_atlas(config, tmp_path, model=tiny_model, overrides=TINY_RUN, data=tiny_target_data,
                          progress=False)
    assert set(folders) == {"animal.n.01-neuron-seed0", "food.n.01-neuron-seed0"}
    assert (animal / "metrics.json").stat().st_mtime_ns == finished  # kept, not run again
    assert SubnetworkResult.load(folders["food.n.01-neuron-seed0"]).config.target == "isa:food.n.01"


def test_a_folder_of_other_settings_is_refused_before_anything_runs(tiny_model, tmp_path):
    """Settings that change what a run learns are refused; when it saves or records (bookkeeping) may differ."""
    config = AtlasConfig(targets=("isa:animal.n.01",), granularity=("neuron",))
    build_atlas(config, tmp_path, model=tiny_model, overrides=TINY_RUN, data=tiny_target_data, progress=False)
    finished = (tmp_path / "animal.n.01-neuron-seed0" / "metrics.json").stat().st_mtime_ns
    build_atlas(config, tmp_path, model=tiny_model, overrides={**TINY_RUN, "checkpoint_every": 7, "log_every": 3},
                data=tiny_target_data, progress=False)
    assert (tmp_path / "animal.n.01-neuron-seed0" / "metrics.json").stat().st_mtime_ns == finished
    with pytest.raises(ValueError, match=r"another config \(steps: saved 4, asked 5\)"):
        build_atlas(config, tmp_path, model=tiny_model, overrides={**TINY_RUN, "steps": 5}, data=tiny_target_data,
                    progress=False)


def test_a_run_without_data_seed_is_the_atlas_run_of_its_seed(tiny_model, tmp_path):
    """A `circuitcut subnet` run (data_seed unset: its facts follow seed 0) is the atlas's seed-0 run, kept as it is;
    a data seed that samples other facts is refused."""
    from circuitcut.subnetwork import find_subnetwork
    from circuitcut.subnetwork.config import preset

    folder = tmp_path / "food.n.01-neuron-seed0"
    own = preset("default", target="isa:food.n.01", **TINY_RUN)
    find_subnetwork(tiny_model, own, folder, progress=False, data=tiny_target_data(tiny_model, own))
    finished = (folder / "metrics.json").stat().st_mtime_ns
    config = AtlasConfig(targets=("isa:food.n.01",), granularity=("neuron",))
    build_atlas(config, tmp_path, model=tiny_model, overrides=TINY_RUN, data=tiny_target_data, progress=False)
    assert (folder / "metrics.json").stat().st_mtime_ns == finished
    with pytest.raises(ValueError, match=r"another config \(data_seed: saved 0, asked 1\)"):
        build_atlas(AtlasConfig(targets=("isa:food.n.01",), granularity=("neuron",), data_seed=1), tmp_path,
                    model=tiny_model, overrides=TINY_RUN, data=tiny_target_data, progress=False)


def test_runs_in_worker_processes(tiny_model_dir, tmp_path):
    """Two runs at a time, each worker loading the model itself."""
    config = AtlasConfig(targets=("isa:animal.n.01", "isa:food.n.01"), granularity=("neuron",), workers=2)
    folders = build_atlas(config, tmp_path, model_name=str(tiny_model_dir), device="cpu", overrides=TINY_RUN,
                          data=tiny_target_data, progress=False)
    assert all((f / "metrics.json").exists() for f in folders.values())


def test_each_granularity_takes_its_preset_and_every_seed_the_same_facts():
    weight, neuron = run_config("isa:food.n.01", "weight", 1), run_config("isa:food.n.01", "neuron", 0)
    assert (weight.granularity, weight.steps, weight.sparsity_start, weight.seed) == ("weight", 40, 3e-4, 1)
    assert (neuron.granularity, neuron.steps) == ("neuron", 60)
    assert weight.sample_seed == neuron.sample_seed == 0
    assert run_name("isa:food.n.01", "weight", 1) == "food.n.01-weight-seed1"
    config = AtlasConfig(granularity=("weight", "neuron"), seeds=(0, 1))
    assert len(config.runs()) == 4 * len(DEFAULT_TARGETS)


@pytest.mark.parametrize(("fields", "message"), [
    ({"targets": ("animal",)}, "write targets as isa:SYNSET"),
    ({"targets": ()}, "targets is empty"),
    ({"targets": ("isa:animal", "isa:animal")}, "names a target twice"),
    ({"granularity": ("weights",)}, "granularity must be one or more of weight, neuron, got weights"),
    ({"seeds": ()}, "seeds must be one or more seeds"),
    ({"workers": 0}, "workers must be >= 1"),
])
def test_a_bad_config_names_the_fix(fields, message):
    with pytest.raises(ValueError, match=message):
        AtlasConfig(**fields)


def test_the_default_targets_nest_under_three_roots_and_hold_distant_families():
    assert len(DEFAULT_TARGETS) >= 16 and len(set(map(synset_name, DEFAULT_TARGETS))) == len(DEFAULT_TARGETS)
    parent = parents(DEFAULT_TARGETS)
    children = {p: [c for c, q in parent.items() if q == p] for p in DEFAULT_TARGETS}
    for root in ("isa:animal.n.01", "isa:food.n.01", "isa:artifact.n.01"):
        assert parent[root] is None and len(children[root]) >= 2
    assert parent["isa:dog.n.01"] == "isa:mammal.n.01"  # three levels
    alone = [t for t in DEFAULT_TARGETS if parent[t] is None and not children[t]]
    assert len(alone) >= 3


def test_check_targets_counts_the_known_facts_a_run_would_find(tiny_model):
    from circuitcut.subnetwork import SubnetworkConfig

    rows = check_targets(tiny_model, ["isa:color.n.01"], SubnetworkConfig(n_candidates=8))
    assert rows == [{"target": "isa:color.n.01", "synset": "color.n.01", "scored": 8, "known": rows[0]["known"],
                     "enough": rows[0]["known"] >= 20}]
    assert "isa:color.n.01" in format_checks(rows)

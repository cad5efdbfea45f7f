"""One tiny atlas for the module's tests: built from real tiny runs once, packed once."""

from __future__ import annotations

import pytest
import torch

import circuitcut
from atlas_helpers import TINY_RUN, TINY_TARGETS, tiny_target_data
from circuitcut.atlas import AtlasConfig, build_atlas, pack_atlas
from subnetwork_helpers import one_thread  # noqa: F401


@pytest.fixture(scope="session")
def atlas_runs(tiny_model_dir, tmp_path_factory):
    """Run folders of three targets, neuron masks under seed 0 and weight masks under seeds 0 and 1 (animal)."""
    torch.set_num_threads(1)
    model = circuitcut.load_model(str(tiny_model_dir), device="cpu")
    out = tmp_path_factory.mktemp("atlas-runs")
    build_atlas(AtlasConfig(targets=tuple(TINY_TARGETS), granularity=("neuron",)), out, model=model,
                overrides=TINY_RUN, data=tiny_target_data, progress=False)
    build_atlas(AtlasConfig(targets=("isa:animal.n.01",), granularity=("weight",), seeds=(0, 1)), out, model=model,
                overrides=TINY_RUN, data=tiny_target_data, progress=False)
    return out


@pytest.fixture(scope="session")
def atlas_dir(atlas_runs, tmp_path_factory):
    from circuitcut.atlas.store import finished_runs

    return pack_atlas(finished_runs(atlas_runs), tmp_path_factory.mktemp("atlas"))

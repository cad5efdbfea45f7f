"""The same runs on a CUDA GPU as on the CPU (tiny model). Skipped where no GPU is present (CI); run where one is.

``load_model`` picks CUDA whenever it is present, so this is the path most GPU users take. Runs that draw
no randomness on the device (pruning's random baseline draws on the CPU; a subnetwork run without
sampling noise and with whole batches) must give the CPU's result up to float rounding.
"""

from __future__ import annotations

import pytest
import torch

import circuitcut
from circuitcut.pruning import PruningConfig, prune
from circuitcut.subnetwork import SubnetworkResult, find_subnetwork
from circuitcut.subnetwork.trainer import SubnetworkTrainer
from pruning_helpers import plant_forget_neuron, planted_data
from subnetwork_helpers import tiny_config, tiny_data

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
DEVICES = ("cpu", "cuda")


@pytest.fixture()
def models(tiny_model_dir):
    loaded = {d: circuitcut.load_model(str(tiny_model_dir), device=d) for d in DEVICES}
    for device, model in loaded.items():
        assert all(p.device.type == device for p in model.parameters()), f"load_model(device={device!r}) left weights elsewhere"
    return loaded


def test_pruning_on_cuda_removes_what_the_cpu_removes(models):
    data = planted_data()
    config = PruningConfig(forget="f", retain="r", sites=("mlp", "attn_v"), steps=3, frac=0.05, tokens=128, window=16)
    results = {}
    for device, model in models.items():
        layer, neuron = plant_forget_neuron(model)
        results[device] = prune(model, config, data=data, progress=False)
    cpu, cuda = results["cpu"], results["cuda"]
    assert cuda.masks["selective"].by_kind()["mlp"][layer, neuron]
    for method in ("selective", "random"):
        for site in config.sites:
            assert torch.equal(cuda.masks[method].by_kind()[site].cpu(), cpu.masks[method].by_kind()[site])
    for a, b in zip(cpu.history, cuda.history):
        for corpus in ("forget", "retain"):
            assert b[corpus]["loss"] == pytest.approx(a[corpus]["loss"], rel=1e-4)


def test_a_noiseless_subnetwork_run_on_cuda_trains_the_cpu_scores(models):
    # No sampling noise and every fact and window in every batch: nothing random is drawn on the device.
    config = tiny_config(steps=6, noise_start=0.0, noise_end=0.0, init_p=0.4, lr=0.5, control_batch=6,
                         lm_batch=6, validate_every=3)
    trainers = {}
    for device, model in models.items():
        trainers[device] = SubnetworkTrainer(model, config, tiny_data(model))
        trainers[device].train(progress=False)
    cpu, cuda = trainers["cpu"], trainers["cuda"]
    for a, b in zip(cpu.scores.scores, cuda.scores.scores):
        assert b.device.type == "cuda"
        torch.testing.assert_close(b.detach().cpu(), a.detach(), atol=1e-4, rtol=1e-4)
    assert [h["loss"] for h in cuda.history] == pytest.approx([h["loss"] for h in cpu.history], rel=1e-4)
    assert all(m.device.type == "cpu" for m in cuda.final_mask().values())
    assert [r.step for r in cuda.selector.records] == [3, 6]


@pytest.mark.parametrize("granularity", ["neuron", "weight"])
def test_a_cuda_run_saves_a_folder_the_cpu_loads(models, tmp_path, granularity):
    config = tiny_config(granularity=granularity)
    result = find_subnetwork(models["cuda"], config, tmp_path, progress=False, data=tiny_data(models["cuda"]))
    loaded = SubnetworkResult.load(tmp_path, models["cpu"])
    assert loaded.metrics["change"] == result.metrics["change"]
    assert all(torch.equal(loaded.mask.removed[n], m.cpu()) for n, m in result.mask.removed.items())
    # The same folder resumes on the GPU: every step is done, so nothing trains and the result is the same.
    again = find_subnetwork(models["cuda"], config, tmp_path, progress=False, data=tiny_data(models["cuda"]))
    assert again.history == result.history

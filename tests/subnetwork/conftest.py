"""The subnetwork tests run on one torch thread; the planted model is built once per session."""

from __future__ import annotations

import pytest
import torch

from subnetwork_helpers import write_planted_model


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One thread: the tiny model's matrices are too small to share, and on a busy 2-core machine
    two spinning OpenMP threads made these tests 6x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def planted_dir(tiny_model_dir, tmp_path_factory):
    """The tiny Llama with one neuron planted to carry one fact (:func:`subnetwork_helpers.write_planted_model`)."""
    return write_planted_model(tiny_model_dir, tmp_path_factory.mktemp("planted"))

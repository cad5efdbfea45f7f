"""The subnetwork tests run on one torch thread."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One thread: the tiny model's matrices are too small to share, and on a busy 2-core machine
    two spinning OpenMP threads made these tests 6x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


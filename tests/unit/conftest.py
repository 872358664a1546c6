"""Fixtures shared by the unit tests of the trained methods."""

from __future__ import annotations

import pytest


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine OpenMP threads spin against other processes and a
    step gets 5-10x slower (measured: 0.7 s vs 3-10 s for a 20-image step under load 11). Modules that
    train networks use it for every test (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

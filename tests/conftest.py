"""Suite-wide settings: keep torch to a few threads (2-core CI machines), skip `gpu` tests without CUDA."""
from __future__ import annotations

import os

# OpenMP threads that spin while waiting stall badly when the 2 cores are shared (server + client, or
# several test processes): with PASSIVE they sleep. Must be set before torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

# One core stays free for the other process of a test (server + client, or a spawned rank).
torch.set_num_threads(max(1, min(4, (os.cpu_count() or 2) - 1)))

# Triton picks compiled or interpreted kernels when it is first imported (transformers may import it early):
# without a GPU, kernel tests must run in its CPU interpreter, so decide here, before any test module loads.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)

"""Rank 0 of the distributed tests is the pytest process itself: restore what joining a group changes."""
from __future__ import annotations

import pytest
import torch

from lightllm_struct.distributed.group import destroy_distributed


@pytest.fixture
def rank0_cleanup():
    threads = torch.get_num_threads()
    # The TP=1 reference runs on one thread too: same work per core as a rank, and no spinning OpenMP
    # threads fighting over the 2 shared cores (that costs 10x on a loaded CI machine).
    torch.set_num_threads(1)
    yield
    destroy_distributed()
    torch.set_num_threads(threads)

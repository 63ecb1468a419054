"""Rank 0 of the distributed tests is the pytest process itself: restore what joining a group changes."""
from __future__ import annotations

import pytest
import torch

from lightllm_struct.distributed.group import destroy_distributed


@pytest.fixture
def rank0_cleanup():
    threads = torch.get_num_threads()
    yield
    destroy_distributed()
    torch.set_num_threads(threads)

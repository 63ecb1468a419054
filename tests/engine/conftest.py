"""Shared fixtures: one engine with the default model for the whole engine test package (loading is slow)."""
from __future__ import annotations

import pytest
import torch

from lightllm_struct.llm import LLM
from tests.support import transformers_default_model


@pytest.fixture(scope="session")
def llm() -> LLM:
    llm = LLM(device="cpu", num_kv_slots=8192, max_num_seqs=16, max_num_batched_tokens=1024)
    yield llm
    llm.engine.shutdown()


def assert_kv_pool_full(engine) -> None:
    """Every slot is free once the prefix cache gives back what nobody uses."""
    assert not engine.has_unfinished()
    assert not engine.scheduler.running and not engine.scheduler.waiting
    assert engine.prefix_cache is None or engine.prefix_cache.num_locked == 0
    engine.flush_prefix_cache()
    assert engine.kv.num_free == engine.kv.num_total


@pytest.fixture(scope="session")
def hf_reference():
    return transformers_default_model()


def hf_greedy(model, prompt_ids: list[int], n: int) -> list[int]:
    with torch.inference_mode():
        out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=n, do_sample=False,
                             attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long))
    return out[0, len(prompt_ids):].tolist()

"""Shared fixtures: one engine with the default model for the whole engine test package (loading is slow)."""
from __future__ import annotations

import pytest
import torch

from lightllm_struct.llm import LLM


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
    """transformers' own LlamaForCausalLM filled by its GGUF loader from the same file (without accelerate)."""
    from transformers import AutoConfig, LlamaForCausalLM
    from transformers.initialization import no_init_weights
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    from lightllm_struct.models.loader import default_model_path

    path = default_model_path()
    config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    with no_init_weights():
        model = LlamaForCausalLM(config)
    tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    assert set(missing) <= {"lm_head.weight"} and not unexpected
    model.tie_weights()
    model.generation_config.eos_token_id = None  # compare exactly 64 tokens, even past an end of turn
    model.generation_config.pad_token_id = 0
    return model.float().eval()


def hf_greedy(model, prompt_ids: list[int], n: int) -> list[int]:
    with torch.inference_mode():
        out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=n, do_sample=False,
                             attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long))
    return out[0, len(prompt_ids):].tolist()

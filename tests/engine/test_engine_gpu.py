"""The engine on CUDA (Triton kernels and sampler, CUDA-graph decode) generates the CPU engine's tokens (fp32),
greedy and seeded-sampled alike (both samplers draw the same Philox noise).

A tiny random Llama with the default model's tokenizer keeps it fast; run on an H100 (2026-11-25): 8/8 equal
greedy and 8/8 equal sampled, with and without graphs; constrained outputs valid; KV pool full afterwards.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import jsonschema
import pytest
import torch

from lightllm_struct.request import Constraint
from lightllm_struct.llm import LLM
from lightllm_struct.models.loader import resolve_model_dir
from lightllm_struct.request import SamplingParams

pytestmark = pytest.mark.gpu
PROMPTS = ["The capital of France is", "def f(x):", "Once upon a time", "1, 2, 3,", "Hello", "JSON:", "abc", "zzz"]
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"enum": ["x", "y"]}},
          "required": ["a", "b"], "additionalProperties": False}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                         num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=True, eos_token_id=2, bos_token_id=1)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8.0)  # sharper logits: no near-ties between the CPU and GPU fp32 paths
    model.save_pretrained(path)
    # Only the tokenizer files are needed: a GPU machine without the default model package can point
    # LLMS_TEST_TOKENIZER_DIR at a folder holding the default model's tokenizer.json / tokenizer_config.json.
    source = Path(os.environ.get("LLMS_TEST_TOKENIZER_DIR") or resolve_model_dir(None))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(source / name, path)
    return path


def _run(path, **options):
    llm = LLM(str(path), num_kv_slots=8192, max_num_seqs=16, **options)
    try:
        greedy = llm.generate(PROMPTS, SamplingParams(temperature=0, max_tokens=32, ignore_eos=True))
        sampled = llm.generate(PROMPTS, SamplingParams(temperature=0.8, top_p=0.95, seed=11, max_tokens=24,
                                                       ignore_eos=True))
        constrained = llm.generate(PROMPTS[:4], SamplingParams(temperature=1.0, max_tokens=40, seed=3),
                                   constraints=Constraint("json_schema", SCHEMA))
        llm.engine.flush_prefix_cache()
        assert llm.engine.kv.num_free == llm.engine.kv.num_total
        tokens = [o.token_ids for o in greedy + sampled]
        return tokens, constrained, llm.engine.runner.graphs is not None
    finally:
        llm.engine.shutdown()


def test_cuda_engine_matches_cpu_engine(tiny_dir):
    cpu, _, _ = _run(tiny_dir, device="cpu")
    for graphs in (False, True):
        gpu, constrained, used_graphs = _run(tiny_dir, device="cuda", dtype="float32", enable_cuda_graphs=graphs)
        assert used_graphs == graphs
        assert gpu == cpu
        for out in constrained:
            jsonschema.validate(json.loads(out.text), SCHEMA)


def test_graphs_overlap_and_jump_forward_give_the_plain_cuda_tokens(tiny_dir):
    """Multi-token graph steps for forced tokens and the overlapped loop vs the eager, plain CUDA engine."""
    def constrained_tokens(**options):
        llm = LLM(str(tiny_dir), device="cuda", dtype="float32", num_kv_slots=8192, max_num_seqs=16, **options)
        try:
            outs = llm.generate(PROMPTS, SamplingParams(temperature=0.8, max_tokens=40, seed=5),
                                constraints=[Constraint("json_schema", SCHEMA), None] * 4)
            llm.engine.flush_prefix_cache()
            assert llm.engine.kv.num_free == llm.engine.kv.num_total
            return outs, llm.engine.overlap, llm.engine.runner.graphs
        finally:
            llm.engine.shutdown()

    plain, overlap, graphs = constrained_tokens(enable_cuda_graphs=False, overlap=False)
    assert not overlap and graphs is None
    fast, overlap, graphs = constrained_tokens()  # the defaults: graphs for k = 1..8 tokens, overlap on
    assert overlap and graphs is not None and (16, 8) in graphs.shapes
    assert [o.token_ids for o in fast] == [o.token_ids for o in plain]
    for out in fast[::2]:
        jsonschema.validate(json.loads(out.text), SCHEMA)

"""The engine at TP=2 (LLM(tensor_parallel_size=2), default model, gloo, CPU) computes TP=1's logits (fp32,
1e-4) and greedy tokens, for 32 steps of a batch of 4 and for a batch of 4 under a JSON-schema constraint.
Grammar masks and sampling stay on rank 0."""
from __future__ import annotations

import json

import jsonschema
import torch

from lightllm_struct.request import Constraint
from lightllm_struct.llm import LLM
from lightllm_struct.request import SamplingParams

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"enum": ["Paris", "Tokyo", "Lima"]},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}
QUESTIONS = ["Describe a person as JSON.", "Give me a user record.", "Who lives in Tokyo? Answer in JSON.",
             "Make up a customer."]
FREE = ["The capital of France is", "def fibonacci(n):", "List three colors:", "Once upon a time"]


def run(llm: LLM):
    """(free token ids, constrained outputs, logits of every step) of one engine."""
    trace: list[torch.Tensor] = []
    launch = llm.engine.runner.launch

    def recording_launch(batch, *inflight):
        future = launch(batch, *inflight)
        logits = future.result()
        if logits is not None:
            trace.append(logits.clone())
        return future

    llm.engine.runner.launch = recording_launch
    free = llm.generate(FREE, SamplingParams(temperature=0, max_tokens=32, ignore_eos=True))
    constrained = llm.chat([[{"role": "user", "content": q}] for q in QUESTIONS],
                           SamplingParams(temperature=0, max_tokens=64),
                           constraints=Constraint("json_schema", SCHEMA))
    return [o.token_ids for o in free], constrained, trace


def test_tp2_engine_matches_tp1_with_json_schema(rank0_cleanup):
    options = dict(device="cpu", num_kv_slots=2048, max_num_seqs=8, num_threads=1,
                   grammar_compile_timeout_s=600)
    tp2 = LLM(tensor_parallel_size=2, **options)
    try:
        assert tp2.engine.model.tp_size == 2
        # SmolLM2-135M has 9 query / 3 KV heads: rank 0 holds 2 KV heads (6 query heads), rank 1 the rest.
        assert tp2.engine.model.num_kv_heads_local == 2 and tp2.engine.kv_cache.k_buffers[0].shape[1] == 2
        free2, constrained2, trace2 = run(tp2)
    finally:
        tp2.engine.shutdown()
    tp1 = LLM(**options)
    try:
        free1, constrained1, trace1 = run(tp1)
    finally:
        tp1.engine.shutdown()
    assert all(len(t) == 32 for t in free2)
    assert free2 == free1
    assert [o.token_ids for o in constrained2] == [o.token_ids for o in constrained1]
    assert len(trace2) == len(trace1) >= 32
    for got, want in zip(trace2, trace1):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    for out in constrained2:
        assert out.finish_reason == "stop", out.text
        jsonschema.validate(json.loads(out.text), SCHEMA)

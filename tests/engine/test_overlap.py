"""The overlapped step loop (step t+1 queued before step t's tokens are read) gives exactly the tokens of the
plain loop: greedy and seeded, constrained (forced tokens too) and free, with stops and an abort mid-batch;
with and without the padded graph layout (replayed eagerly on the CPU)."""
from __future__ import annotations

import json
import re

import jsonschema
import pytest

from lightllm_struct.engine.cuda_graphs import CUDAGraphRunner
from lightllm_struct.request import Constraint, Request, SamplingParams
from tests.engine.conftest import assert_kv_pool_full

PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120}},
          "required": ["name", "age"], "additionalProperties": False}
ANSWER = r"The final answer, after careful consideration, is (yes|no)\."
ABORTED = 3  # index of the request aborted mid-run


def _requests(llm, temperature: float) -> list[Request]:
    chat = lambda text: llm.tokenizer.apply_chat_template([{"role": "user", "content": text}])  # noqa: E731
    specs = [(chat("Describe a person as JSON."), Constraint("json_schema", PERSON), {}),
             (chat("Is water wet?"), Constraint("regex", ANSWER), {}),
             ("Once upon a time", None, {"stop": (" the",)}),
             ("The list of numbers: 1, 2, 3,", None, {"ignore_eos": True}),
             (chat("Tell me a joke."), None, {"max_tokens": 7})]
    return [Request(prompt_token_ids=llm.tokenizer.encode(p), constraint=c,
                    sampling=SamplingParams(temperature=temperature, seed=5 + i, **{"max_tokens": 30, **kw}))
            for i, (p, c, kw) in enumerate(specs)]


def _run(engine, requests: list[Request]) -> list[list[int]]:
    engine.flush_prefix_cache()
    for req in requests:
        engine.add_request(req)
    steps = 0
    while engine.has_unfinished():
        engine.step()
        steps += 1
        if steps == 6:
            engine.abort_request(requests[ABORTED].request_id)
    return [list(r.output_token_ids) for r in requests]


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_overlap_gives_the_tokens_of_the_plain_loop(llm, temperature):
    engine = llm.engine
    graphs = CUDAGraphRunner(engine.model, engine.kv_cache, scratch_slot=engine.kv_cache.num_slots - 1,
                             max_context=engine.max_model_len, batch_sizes=(1, 2, 4, 8), tokens_per_seq=(1, 2, 4),
                             eager=True)
    graphs.capture()
    results = {}
    try:
        for overlap, padded in ((False, False), (True, False), (True, True)):
            engine.overlap = overlap
            engine.runner.graphs = graphs if padded else None
            engine.scheduler.max_decode_tokens = graphs.max_tokens_per_seq if padded else None
            reqs = _requests(llm, temperature)
            results[overlap, padded] = (_run(engine, reqs), reqs)
            assert_kv_pool_full(engine)
    finally:
        engine.overlap, engine.runner.graphs, engine.scheduler.max_decode_tokens = False, None, None
    (base, _), *others = results.values()
    for tokens, reqs in others:
        for i, (a, b) in enumerate(zip(base, tokens)):
            if i == ABORTED:  # aborted at the same step: the overlapped loop has recorded one token less
                assert b == a[:len(b)] and 0 < len(b) and reqs[i].status.finish_reason == "abort"
            else:
                assert a == b, f"request {i} differs"
        jsonschema.validate(json.loads(reqs[0].output_text), PERSON)
        assert re.fullmatch(ANSWER, reqs[1].output_text)
        assert len(reqs[4].output_token_ids) == 7 and reqs[4].status.finish_reason == "length"

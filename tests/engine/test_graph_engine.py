"""The engine's decode steps through the padded graph layout (replayed eagerly on the CPU): jump-forward's
forced tokens run as multi-token decode steps and give exactly the tokens of the eager extend path."""
from __future__ import annotations

import json
import re

import jsonschema

from lightllm_struct.engine.cuda_graphs import CUDAGraphRunner
from lightllm_struct.engine.grammar_manager import Constraint
from lightllm_struct.request import Request, SamplingParams
from tests.engine.conftest import assert_kv_pool_full

PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120}},
          "required": ["name", "age"], "additionalProperties": False}
ANSWER = r"The final answer, after careful consideration, is (yes|no)\."


def _requests(llm, temperature: float, tag: str) -> list[Request]:
    chat = lambda text: llm.tokenizer.apply_chat_template([{"role": "user", "content": text}])  # noqa: E731
    specs = [(chat("Describe a person as JSON."), Constraint("json_schema", PERSON)),
             (chat("Is water wet?"), Constraint("regex", ANSWER)), ("Once upon a time", None),
             (chat("Describe a person as JSON."), Constraint("json_schema", PERSON))]
    return [Request(prompt_token_ids=llm.tokenizer.encode(p), constraint=c, request_id=f"{tag}-{i}",
                    sampling=SamplingParams(temperature=temperature, seed=11 + i, max_tokens=40))
            for i, (p, c) in enumerate(specs)]


def _run(engine, requests) -> tuple[dict[str, list[int]], int, int]:
    eager_steps, replays = 0, 0
    prepare, graphs = engine.runner.prepare, engine.runner.graphs

    def counting_prepare(batch):
        nonlocal eager_steps
        eager_steps += 1
        return prepare(batch)

    engine.runner.prepare = counting_prepare
    if graphs is not None:
        run_padded = graphs.run_padded

        def counting_run(*args, **kw):
            nonlocal replays
            replays += 1
            return run_padded(*args, **kw)
        graphs.run_padded = counting_run
    engine.flush_prefix_cache()  # both runs prefill the same way
    try:
        for req in requests:
            engine.add_request(req)
        while engine.has_unfinished():
            engine.step()
    finally:
        engine.runner.prepare = prepare
        if graphs is not None:
            del graphs.run_padded
    return {r.request_id.split("-")[1]: list(r.output_token_ids) for r in requests}, eager_steps, replays


def test_multi_token_graph_steps_give_the_eager_tokens(llm):
    engine = llm.engine
    assert engine.jump_forward
    graphs = CUDAGraphRunner(engine.model, engine.kv_cache, scratch_slot=engine.kv_cache.num_slots - 1,
                             max_context=engine.max_model_len, batch_sizes=(1, 2, 4), tokens_per_seq=(1, 2, 4),
                             eager=True)
    graphs.capture()
    for temperature in (0.0, 0.8):
        eager, eager_steps, _ = _run(engine, _requests(llm, temperature, "eager"))
        engine.runner.graphs, engine.scheduler.max_decode_tokens = graphs, graphs.max_tokens_per_seq
        try:
            reqs = _requests(llm, temperature, "graph")
            padded, steps_eager, replays = _run(engine, reqs)
        finally:
            engine.runner.graphs, engine.scheduler.max_decode_tokens = None, None
        assert padded == eager
        assert steps_eager == 1 and replays > 0  # only the prefill ran eager: forced tokens never did
        jsonschema.validate(json.loads(reqs[0].output_text), PERSON)
        assert re.fullmatch(ANSWER, reqs[1].output_text)
    assert_kv_pool_full(engine)

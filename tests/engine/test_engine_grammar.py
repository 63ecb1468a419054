"""Constrained and free requests in one batch through the real engine, every output independently validated."""
from __future__ import annotations

import json
import re

import jsonschema

from lightllm_struct.request import Constraint
from lightllm_struct.grammar.errors import GrammarError
from lightllm_struct.request import Request, RequestStatus, SamplingParams
from tests.engine.conftest import assert_kv_pool_full

PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120}},
          "required": ["name", "age"], "additionalProperties": False}
COLORS = {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "minItems": 1, "maxItems": 3}
DATE = r"\d{4}-\d{2}-\d{2}"


def _chat(llm, text):
    return llm.tokenizer.apply_chat_template([{"role": "user", "content": text}])


def test_mixed_constrained_and_free_requests_in_one_batch(llm):
    prompts = [_chat(llm, "Describe a person as JSON."), _chat(llm, "Tell me a fun fact."),
               _chat(llm, "List some colors as a JSON array."), _chat(llm, "When did WW2 end? Give the date."),
               _chat(llm, "Pick yes or no: is the sky blue?"), "The weather today is"]
    constraints = [Constraint("json_schema", PERSON), None, Constraint("json_schema", COLORS),
                   Constraint("regex", DATE), Constraint("choice", ["yes", "no"]), None]
    for temperature in (0.0, 1.0):
        params = SamplingParams(temperature=temperature, max_tokens=60, seed=7)
        outs = llm.generate(prompts, params, constraints=constraints)
        jsonschema.validate(json.loads(outs[0].text), PERSON)
        jsonschema.validate(json.loads(outs[2].text), COLORS)
        assert re.fullmatch(DATE, outs[3].text)
        assert outs[4].text in ("yes", "no")
        for i in (0, 2, 3, 4):
            assert outs[i].finish_reason == "stop", outs[i]
        assert outs[1].num_output_tokens > 0 and outs[5].num_output_tokens > 0
    assert_kv_pool_full(llm.engine)


def test_constrained_greedy_output_is_batch_independent(llm):
    prompt = _chat(llm, "Describe a person as JSON.")
    alone = llm.generate(prompt, SamplingParams(temperature=0, max_tokens=60),
                         constraints=Constraint("json_schema", PERSON))[0]
    batch = llm.generate([prompt, "Hello", prompt], SamplingParams(temperature=0, max_tokens=60),
                         constraints=[Constraint("json_schema", PERSON), None, None])
    assert batch[0].token_ids == alone.token_ids
    jsonschema.validate(json.loads(alone.text), PERSON)


def test_a_bad_grammar_fails_alone_while_others_run(llm):
    engine, tok = llm.engine, llm.tokenizer
    bad = Request(prompt_token_ids=tok.encode("x"), sampling=SamplingParams(max_tokens=5),
                  constraint=Constraint("regex", "(unclosed"))
    good = Request(prompt_token_ids=tok.encode("Count: 1, 2,"), sampling=SamplingParams(temperature=0, max_tokens=6,
                                                                                        ignore_eos=True))
    engine.add_request(good)
    engine.add_request(bad)
    finals = {}
    while engine.has_unfinished():
        finals.update({o.request_id: o for o in engine.step() if o.finished})
    assert bad.status == RequestStatus.FINISHED_ERROR and isinstance(bad.error, GrammarError)
    assert finals[bad.request_id].finish_reason == "error"
    assert finals[good.request_id].num_output_tokens == 6
    assert_kv_pool_full(engine)


def test_max_tokens_cuts_a_constrained_output_with_length(llm):
    out = llm.generate(_chat(llm, "Describe a person as JSON."), SamplingParams(temperature=0, max_tokens=3),
                       constraints=Constraint("json_schema", PERSON))[0]
    assert out.finish_reason == "length" and out.num_output_tokens == 3


def test_jump_forward_appends_forced_tokens_without_a_step_each(llm):
    engine, tok = llm.engine, llm.tokenizer
    assert engine.jump_forward  # automatic: on (under CUDA graphs as multi-token decode steps)
    pattern = r"The final answer, after careful consideration, is (yes|no)\."
    req = Request(prompt_token_ids=tok.encode(_chat(llm, "Is water wet?")), sampling=SamplingParams(
        temperature=0, max_tokens=40), constraint=Constraint("regex", pattern))
    engine.add_request(req)
    steps = 0
    while engine.has_unfinished():
        engine.step()
        steps += 1
    assert re.fullmatch(pattern, req.output_text) and req.status == RequestStatus.FINISHED_STOPPED
    assert steps < len(req.output_token_ids) // 2  # the long literal prefix took one step, not one per token
    assert_kv_pool_full(engine)

"""Constrained requests under prefix caching and continuous batching: no request fails, every output validates.

The server once reported "the grammar rejected sampled token" with six tool-call requests sharing one Lark
grammar (some prompts identical) and prefix caching on. This stress test mixes exactly those ingredients:
identical and overlapping prompts (fully and partly cached), one constraint shared by many requests and
different constraints side by side, temperature 1 with top-k / top-p and many seeds, requests joining at
different steps, a small KV pool (evictions and preemptions) and chunked prefill under a small token budget.
"""
from __future__ import annotations

import json
import random
import re

import jsonschema
import lark
import pytest

from lightllm_struct.request import Constraint
from lightllm_struct.llm import LLM
from lightllm_struct.request import Request, SamplingParams
from lightllm_struct.server.protocol import Tool
from lightllm_struct.server.tools import tool_call_grammar
from tests.engine.conftest import assert_kv_pool_full

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
           "parameters": {"type": "object", "properties": {
               "city": {"type": "string", "minLength": 1, "maxLength": 6},
               "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"],
               "additionalProperties": False}}}
TOOL_GRAMMAR = tool_call_grammar([Tool.model_validate(WEATHER)], "required", parallel=False)
TOOL_CALL = re.compile(r"<tool_call>(.*)</tool_call>", re.S)
EVENT = {"type": "object", "properties": {"kind": {"enum": ["talk", "walk", "meal"]},
                                          "hour": {"type": "integer", "minimum": 0, "maximum": 23},
                                          "tag": {"type": "string", "maxLength": 3}},
         "required": ["kind", "hour"], "additionalProperties": False}
DATE = r"20\d{2}-(0[1-9]|1[0-2])-[0-3]\d"
CHOICES = ["yes", "no", "maybe later"]
MAX_TOKENS = 48  # every constraint above ends well within this (a string's characters are bounded)


def _tool_ok(text: str) -> None:
    lark.Lark(TOOL_GRAMMAR, parser="lalr").parse(text)  # lark itself is the judge of the grammar
    call = json.loads(TOOL_CALL.fullmatch(text).group(1))
    assert call["name"] == "get_weather"
    jsonschema.validate(call["arguments"], WEATHER["function"]["parameters"])


CASES = [  # (constraint, validator of the final text)
    (Constraint("lark", TOOL_GRAMMAR), _tool_ok),
    (Constraint("json_schema", EVENT), lambda t: jsonschema.validate(json.loads(t), EVENT)),
    (Constraint("regex", DATE), lambda t: re.fullmatch(DATE, t) or pytest.fail(f"{t!r} !~ {DATE}")),
    (Constraint("choice", CHOICES), lambda t: t in CHOICES or pytest.fail(f"{t!r} not in {CHOICES}")),
]
SYSTEM = ("You are a precise assistant. Answer with exactly the format you are given, nothing else. "
          "Cities: Paris, Rome, Oslo. Units: celsius, fahrenheit. Dates are written as YYYY-MM-DD.")
QUESTIONS = ["What's the weather in Paris?", "What's the weather in Oslo?", "Plan my day.", "When is the fair?",
             "Should I go out?"]


@pytest.fixture(scope="module")
def small_llm() -> LLM:
    # A tight pool and token budget: prefixes get evicted, requests preempted, prompts chunked.
    llm = LLM(device="cpu", num_kv_slots=400, max_num_seqs=6, max_num_batched_tokens=96,
              enable_prefix_caching=True)
    yield llm
    llm.engine.shutdown()


def _prompt_ids(llm: LLM, rng: random.Random) -> list[int]:
    question = rng.choice(QUESTIONS)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    ids = llm.tokenizer.encode(llm.tokenizer.apply_chat_template(messages), add_special_tokens=False)
    return ids if rng.random() < 0.8 else ids[:-rng.randint(1, 6)]  # partly cached prefixes of others


def _requests(llm: LLM, rng: random.Random, n: int) -> list[tuple[Request, object]]:
    out = []
    for _ in range(n):
        constraint, check = rng.choice(CASES)
        top_k, top_p = rng.choice([(0, 1.0), (20, 1.0), (0, 0.9), (40, 0.95)])
        params = SamplingParams(temperature=1.0, top_k=top_k, top_p=top_p, max_tokens=MAX_TOKENS,
                                seed=rng.getrandbits(40))
        out.append((Request(prompt_token_ids=_prompt_ids(llm, rng), sampling=params, constraint=constraint), check))
    return out


def _run_staggered(engine, pending: list, rng: random.Random) -> dict[str, object]:
    """Add a few requests before each step (continuous batching); returns the final outputs by id."""
    pending, finals, steps = list(pending), {}, 0
    while pending or engine.has_unfinished():
        for _ in range(rng.choice([0, 0, 1, 1, 2, 4])):
            if pending:
                engine.add_request(pending.pop())
        finals.update({o.request_id: o for o in engine.step() if o.finished})
        steps += 1
        assert steps < 2000, "the engine stopped making progress"
    return finals


@pytest.mark.parametrize("round_seed", [1, 2, 3, 4])
def test_constrained_batches_with_prefix_cache_never_fail_and_always_validate(small_llm, round_seed):
    engine, rng = small_llm.engine, random.Random(round_seed)
    hits_before = engine.grammar.stats["grammar_cache_hits_total"]
    engine.scheduler.history.extend([2] * 20)  # optimistic output estimates: admit more, then preempt
    reqs = _requests(small_llm, rng, 16)
    finals = _run_staggered(engine, [r for r, _ in reqs], rng)
    for req, check in reqs:
        out = finals[req.request_id]
        assert out.error is None and out.finish_reason == "stop", (out.finish_reason, out.error, out.text)
        check(out.text)
    assert any(finals[r.request_id].num_cached_tokens > 0 for r, _ in reqs)  # the prefix cache was used
    assert engine.grammar.stats["grammar_cache_hits_total"] > hits_before  # grammars were shared
    assert_kv_pool_full(engine)

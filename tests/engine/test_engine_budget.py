"""Budgets through the real engine: tight max_tokens still end in a whole, valid answer ("stop"), forced
tokens included; an impossible budget fails the request with a typed error, which ``generate`` raises."""
from __future__ import annotations

import json
import re

import jsonschema
import pytest

from lightllm_struct import client
from lightllm_struct.errors import BudgetTooSmallError
from lightllm_struct.request import Constraint, SamplingParams

NOTE = {"type": "object", "additionalProperties": False, "required": ["title", "body", "tags"],
        "properties": {"title": {"type": "string"}, "body": {"type": "string"},
                       "tags": {"type": "array", "items": {"type": "string"}}}}
FORCED_TAIL = r"[a-z ]+, and that is my final answer about it\."


def _chat(llm, text):
    return llm.tokenizer.apply_chat_template([{"role": "user", "content": text}])


def test_tight_budgets_end_whole_with_stop(llm):
    prompt = _chat(llm, "Write a very long note about Rome as JSON with many tags.")
    budgets = [24, 31, 47]
    outs = llm.generate([prompt] * len(budgets), [SamplingParams(temperature=1.0, seed=s, max_tokens=b)
                                                  for s, b in enumerate(budgets)],
                        constraints=Constraint("json_schema", NOTE))
    for out, budget in zip(outs, budgets):
        assert out.finish_reason == "stop" and out.num_output_tokens <= budget, (out.finish_reason, out.text)
        jsonschema.validate(json.loads(out.text), NOTE)


def test_forced_tokens_respect_the_budget(llm):
    assert llm.engine.jump_forward
    out = llm.generate(_chat(llm, "Say something long."), SamplingParams(temperature=1.0, seed=1, max_tokens=20),
                       constraints=Constraint("regex", FORCED_TAIL))[0]
    assert out.finish_reason == "stop" and out.num_output_tokens <= 20
    assert re.fullmatch(FORCED_TAIL, out.text), out.text


def test_impossible_budget_fails_typed_and_generate_raises_it(llm, monkeypatch):
    schema = {"const": "lorem ipsum dolor sit amet " * 40}
    out = llm.generate(_chat(llm, "Hi"), SamplingParams(max_tokens=4), constraints=Constraint("json_schema", schema))[0]
    assert out.finish_reason == "error" and isinstance(out.exception, BudgetTooSmallError)
    assert out.exception.param == "max_tokens" and out.exception.min_tokens > 4
    monkeypatch.setitem(client._LOCAL._llms, None, llm)  # in-process generate() on this engine
    with pytest.raises(BudgetTooSmallError) as info:
        client.generate("Hi", schema=schema, max_tokens=4)
    assert info.value.http_status == 400 and f"at least {info.value.min_tokens} tokens" in info.value.message
    note = client.generate("Write a long note about Rome.", schema=NOTE, max_tokens=26, temperature=1.0, seed=2)
    jsonschema.validate(note, NOTE)

"""Tight budgets end to end: unbounded strings and arrays still come back whole, valid, with "stop".

The default model through the official openai client, chat and completions, streaming and not, a forced tool
call, temperature 0 and 1, max_tokens 30-100; a budget no answer can fit is a 400 naming max_tokens.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import openai
import pytest

NOTE = {"type": "object", "additionalProperties": False, "required": ["title", "body", "tags"],
        "properties": {"title": {"type": "string"}, "body": {"type": "string"},
                       "tags": {"type": "array", "items": {"type": "string"}}}}
TOOL = {"type": "function", "function": {"name": "save_note", "description": "Save a note",
                                         "parameters": NOTE}}
PROMPT = "Write a long, detailed note about the history of Rome as JSON with a title, a body and many tags."
# (endpoint, stream, temperature, max_tokens)
CASES = [("chat", False, 0.0, 30), ("chat", True, 1.0, 45), ("completions", False, 1.0, 60),
         ("completions", True, 0.0, 100), ("tools", False, 1.0, 40), ("tools", True, 0.0, 55)]


def _ask(client, model: str, endpoint: str, stream: bool, temp: float, max_tokens: int) -> tuple[str, str]:
    common = dict(model=model, max_tokens=max_tokens, temperature=temp, seed=5, stream=stream)
    rf = {"type": "json_schema", "json_schema": {"name": "note", "schema": NOTE}}
    if endpoint == "completions":
        r = client.completions.create(prompt=PROMPT + "\nJSON:", extra_body={"response_format": rf}, **common)
        if not stream:
            return r.choices[0].text, r.choices[0].finish_reason
        chunks = list(r)
        return "".join(c.choices[0].text for c in chunks if c.choices), _last_reason(chunks)
    kw = {"response_format": rf} if endpoint == "chat" else {"tools": [TOOL], "tool_choice": "required"}
    r = client.chat.completions.create(messages=[{"role": "user", "content": PROMPT}], **kw, **common)
    if not stream:
        msg = r.choices[0].message
        text = msg.tool_calls[0].function.arguments if endpoint == "tools" else msg.content
        return text, r.choices[0].finish_reason
    chunks = list(r)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    if endpoint == "tools":
        text = "".join(tc.function.arguments or "" for d in deltas for tc in (d.tool_calls or []) if tc.function)
    else:
        text = "".join(d.content or "" for d in deltas)
    return text, _last_reason(chunks)


def _last_reason(chunks) -> str | None:
    return next((c.choices[0].finish_reason for c in reversed(chunks) if c.choices and c.choices[0].finish_reason),
                None)


@pytest.fixture(scope="module")
def answers(server, openai_client):
    with ThreadPoolExecutor(len(CASES)) as pool:
        return dict(zip(CASES, pool.map(lambda c: _ask(openai_client, server.model, *c), CASES)))


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{'stream' if c[1] else 'once'}-t{c[2]:g}-{c[3]}")
def test_tight_budget_answers_are_whole_and_valid(answers, case):
    text, reason = answers[case]
    assert reason == ("tool_calls" if case[0] == "tools" else "stop"), (reason, text)
    jsonschema.validate(json.loads(text), NOTE)


@pytest.mark.parametrize("stream", [False, True])
def test_impossible_budget_is_a_400_naming_max_tokens(server, openai_client, stream):
    schema = {"type": "object", "required": ["essay"], "additionalProperties": False,
              "properties": {"essay": {"const": "lorem ipsum dolor sit amet " * 60}}}
    with pytest.raises(openai.BadRequestError) as info:
        r = openai_client.chat.completions.create(
            model=server.model, messages=[{"role": "user", "content": "An essay."}], max_tokens=8, stream=stream,
            response_format={"type": "json_schema", "json_schema": {"name": "essay", "schema": schema}})
        list(r) if stream else None
    error = info.value.body if isinstance(info.value.body, dict) else {}
    error = error.get("error", error)
    assert info.value.status_code == 400 and error.get("param") == "max_tokens"
    assert "max_tokens" in error.get("message", "") and "at least" in error.get("message", "")

"""Tool calling end to end with three tools: "required" and named choices always give calls whose arguments
validate against the tool's schema; streaming reassembles to the non-streamed answer."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import pytest

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
     "parameters": {"type": "object", "properties": {
         "city": {"type": "string", "minLength": 1, "maxLength": 16},
         "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "search_web", "description": "Search the web",
     "parameters": {"type": "object", "properties": {
         "query": {"type": "string", "minLength": 1, "maxLength": 24},
         "max_results": {"type": "integer", "minimum": 1, "maximum": 5}},
         "required": ["query"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "create_event", "description": "Put an event in the calendar",
     "parameters": {"$defs": {"person": {"type": "string", "minLength": 1, "maxLength": 10}},
                    "type": "object", "properties": {
                        "title": {"type": "string", "minLength": 1, "maxLength": 16},
                        "date": {"type": "string", "format": "date"},
                        "attendees": {"type": "array", "items": {"$ref": "#/$defs/person"}, "maxItems": 2}},
                    "required": ["title", "date"], "additionalProperties": False}}},
]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
PROMPTS = ["What's the weather like in Paris?", "Find me recent news about rockets.",
           "Book a meeting with Ann tomorrow, 2025-05-01."]
NAMED = [{"type": "function", "function": {"name": n}} for n in SCHEMAS]
MAX_TOKENS = 100


def _request(model: str, prompt: str, choice, temp: float, **kw) -> dict:
    return dict(model=model, messages=[{"role": "user", "content": prompt}], tools=TOOLS, tool_choice=choice,
                max_tokens=MAX_TOKENS, temperature=temp, seed=3, parallel_tool_calls=False, **kw)


def _check_calls(message, finish_reason, only: str | None = None) -> list[tuple[str, str]]:
    assert finish_reason == "tool_calls", (finish_reason, message)
    assert message.tool_calls, message
    calls = []
    for call in message.tool_calls:
        assert call.type == "function" and call.id.startswith("call_")
        name, args = call.function.name, call.function.arguments
        assert name in SCHEMAS and (only is None or name == only), name
        jsonschema.validate(json.loads(args), SCHEMAS[name], format_checker=jsonschema.FormatChecker())
        calls.append((name, args))
    return calls


CASES = [(p, "required", t) for p in PROMPTS for t in (0.0, 1.0)] + \
        [(PROMPTS[i], NAMED[j], 1.0) for i in range(3) for j in range(3) if i != j]


@pytest.fixture(scope="module")
def answers(server, openai_client):
    def ask(case):
        prompt, choice, temp = case
        r = openai_client.chat.completions.create(**_request(server.model, prompt, choice, temp))
        return r.choices[0]
    with ThreadPoolExecutor(12) as pool:
        return list(pool.map(ask, CASES))


@pytest.mark.parametrize("index", range(len(CASES)))
def test_forced_choices_always_give_valid_calls(answers, index):
    choice = CASES[index][1]
    only = choice["function"]["name"] if isinstance(choice, dict) else None
    _check_calls(answers[index].message, answers[index].finish_reason, only)


def _stream(client, kw) -> tuple[str | None, list[tuple[str, str]], str]:
    content, calls, reason = "", {}, None
    for chunk in client.chat.completions.create(**kw, stream=True):
        assert chunk.object == "chat.completion.chunk"
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for piece in delta.tool_calls or []:
            call = calls.setdefault(piece.index, {"name": None, "arguments": ""})
            if piece.function.name:
                call["name"] = piece.function.name
            call["arguments"] += piece.function.arguments or ""
        reason = chunk.choices[0].finish_reason or reason
    return content or None, [(c["name"], c["arguments"]) for c in calls.values()], reason


@pytest.mark.parametrize("choice", ["required", NAMED[2]], ids=["required", "named"])
def test_streaming_reassembles_to_the_non_streamed_answer(server, openai_client, choice):
    kw = _request(server.model, PROMPTS[2], choice, 0.0)
    full = openai_client.chat.completions.create(**kw).choices[0]
    expected = _check_calls(full.message, full.finish_reason)
    content, calls, reason = _stream(openai_client, kw)
    assert (content, calls, reason) == (full.message.content, expected, "tool_calls")


def test_auto_gives_text_or_a_valid_call_and_none_gives_text(server, openai_client):
    auto = openai_client.chat.completions.create(**_request(server.model, PROMPTS[0], "auto", 0.0)).choices[0]
    if auto.message.tool_calls:
        _check_calls(auto.message, auto.finish_reason)
    else:
        assert auto.message.content  # free text may start with any character, "<" included
    none = openai_client.chat.completions.create(**_request(server.model, PROMPTS[0], "none", 0.0)).choices[0]
    assert none.message.tool_calls is None and none.finish_reason in ("stop", "length")

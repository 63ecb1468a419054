"""Every tool-call format end to end, on tiny random-weight models carrying real chat templates.

Random weights say nothing sensible, so these tests check only what the grammar guarantees: each
``tool_choice`` mode's shape, every call's arguments against its schema (``jsonschema``), the reasoning
section and its budget, Mistral's call ids, and that a stream reassembles to exactly the non-streamed answer.
"""
from __future__ import annotations

import json

import jsonschema
import pytest

from tests.server.chat_models import write_chat_model

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 8},
                                         "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "add", "description": "Add two digits", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9},
                                         "b": {"type": "integer", "minimum": 0, "maximum": 9}},
        "required": ["a", "b"], "additionalProperties": False}}},
]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
FORMATS = ["qwen2_5", "qwen3", "llama3_1", "mistral_v3", "hermes2_pro"]
USER = [{"role": "user", "content": "What is the weather in Oslo, and what is 2 + 3?"}]


@pytest.fixture(scope="module", params=FORMATS)
def client(request, tmp_path_factory):
    from fastapi.testclient import TestClient
    from openai import OpenAI

    from lightllm_struct.config import EngineConfig
    from lightllm_struct.server.launch import build_app

    path = write_chat_model(tmp_path_factory.mktemp(request.param), request.param)
    app = build_app(EngineConfig(model=str(path), device="cpu", max_num_seqs=4, num_kv_slots=4096,
                                 enable_cuda_graphs=False), served_model_name="m", warmup=False)
    with TestClient(app) as http:
        yield request.param, OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=http,
                                    max_retries=0)


def _ask(openai, **kw):
    body = dict(model="m", messages=USER, tools=TOOLS, max_tokens=96, temperature=1.0, seed=11)
    body.update(kw)
    extra = {k: body.pop(k) for k in ("max_reasoning_tokens",) if k in body}
    return openai.chat.completions.create(**body, extra_body=extra or None)


def _check_calls(name: str, message, only: str | None = None) -> None:
    assert message.tool_calls, message
    for call in message.tool_calls:
        assert call.type == "function" and call.function.name in SCHEMAS
        assert only is None or call.function.name == only
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])
        if name == "mistral_v3":
            assert len(call.id) == 9 and call.id.isalnum()  # what Mistral's template accepts back


def _streamed(openai, **kw) -> dict:
    content, reasoning, calls = "", "", {}
    reason = None
    for chunk in _ask(openai, stream=True, **kw):
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        delta = choice.delta
        content += delta.content or ""
        reasoning += getattr(delta, "reasoning_content", None) or ""
        for piece in delta.tool_calls or []:
            call = calls.setdefault(piece.index, {"name": None, "arguments": ""})
            if piece.id:
                assert call["name"] is None, "a call's id and name come once"
                call["name"] = piece.function.name
            call["arguments"] += piece.function.arguments or ""
        reason = choice.finish_reason or reason
    return {"content": content or None, "reasoning": reasoning or None, "reason": reason,
            "calls": [(c["name"], c["arguments"]) for _, c in sorted(calls.items())]}


def _whole(message, reason) -> dict:
    return {"content": message.content, "reasoning": getattr(message, "reasoning_content", None), "reason": reason,
            "calls": [(c.function.name, c.function.arguments) for c in message.tool_calls or []]}


def test_required_gives_one_valid_call_and_stream_equals_whole(client):
    name, openai = client
    for seed in (1,):
        kw = dict(tool_choice="required", parallel_tool_calls=False, seed=seed, max_reasoning_tokens=6)
        got = _ask(openai, **kw).choices[0]
        assert got.finish_reason == "tool_calls" and len(got.message.tool_calls) == 1, got
        _check_calls(name, got.message)
        assert _streamed(openai, **kw) == _whole(got.message, got.finish_reason)


def test_named_and_parallel_calls(client):
    name, openai = client
    named = _ask(openai, tool_choice={"type": "function", "function": {"name": "add"}}, max_reasoning_tokens=6)
    assert named.choices[0].finish_reason in ("tool_calls", "length")
    _check_calls(name, named.choices[0].message, only="add")
    if name == "llama3_1":
        return  # Llama 3.1's template renders one call per turn: the format has no parallel calls
    many = _ask(openai, tool_choice="required", max_tokens=400, seed=5, max_reasoning_tokens=6).choices[0]
    complete = many.message.tool_calls if many.finish_reason == "tool_calls" else many.message.tool_calls[:-1]
    _check_calls(name, many.message.model_copy(update={"tool_calls": complete or many.message.tool_calls[:1]}))


def test_auto_and_none(client):
    name, openai = client
    for seed in (3,):
        got = _ask(openai, tool_choice="auto", seed=seed, max_tokens=24, max_reasoning_tokens=6).choices[0]
        if got.message.tool_calls and got.finish_reason == "tool_calls":
            _check_calls(name, got.message)
        else:
            assert got.message.content or got.finish_reason == "length"
    none = _ask(openai, tool_choice="none", max_tokens=12, max_reasoning_tokens=6).choices[0]
    assert none.message.tool_calls is None


def test_tool_results_fed_back_render_with_the_template(client):
    name, openai = client
    first = _ask(openai, tool_choice="required", parallel_tool_calls=False, max_reasoning_tokens=6).choices[0]
    call = first.message.tool_calls[0]
    history = USER + [{"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                      {"role": "tool", "tool_call_id": call.id, "content": "sunny, 5"}]
    second = _ask(openai, messages=history, tool_choice="auto", max_tokens=16, max_reasoning_tokens=6).choices[0]
    assert second.finish_reason in ("stop", "length", "tool_calls")


def test_reasoning_section_is_bounded_and_apart(client):
    name, openai = client
    if name != "qwen3":
        pytest.skip("only Qwen3's template reasons")
    for seed in (1, 2):
        got = _ask(openai, tool_choice="required", max_reasoning_tokens=5, seed=seed, max_tokens=160).choices[0]
        reasoning = got.message.reasoning_content or ""
        assert "</think>" not in reasoning and "<think>" not in reasoning
        assert len(reasoning) <= 5 * len("</think>")  # five units: a character, or a '<' run that is no marker
        _check_calls(name, got.message)
    plain = _ask(openai, tools=None, max_reasoning_tokens=4, max_tokens=24, seed=9).choices[0]
    assert plain.message.tool_calls is None and "</think>" not in (plain.message.content or "")
    schema = SCHEMAS["add"]  # response_format applies to the answer after the reasoning, not to the reasoning
    shaped = _ask(openai, tools=None, max_reasoning_tokens=4, max_tokens=64, seed=3,
                  response_format={"type": "json_schema", "json_schema": {"name": "add", "schema": schema}}).choices[0]
    assert shaped.finish_reason == "stop", shaped
    jsonschema.validate(json.loads(shaped.message.content), schema)


def test_structural_tag_request_field(client):
    name, openai = client
    if name != "qwen2_5":
        pytest.skip("one template is enough: the tag does not depend on it")
    import re

    add = SCHEMAS["add"]
    tag = {"type": "structural_tag", "format": {
        "type": "triggered_tags", "triggers": ["<function="], "at_least_one": True, "stop_after_first": True,
        "tags": [{"begin": "<function=add>", "content": {"type": "json_schema", "json_schema": add},
                  "end": "</function>"}]}}
    got = openai.chat.completions.create(model="m", messages=USER, max_tokens=64, temperature=1.0, seed=2,
                                         extra_body={"structured_outputs": {"structural_tag": tag}}).choices[0]
    m = re.fullmatch(r"<function=add>(.*)</function>", got.message.content or "", re.S)
    assert m and got.finish_reason == "stop", got
    jsonschema.validate(json.loads(m.group(1)), add)

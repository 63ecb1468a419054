"""Every bad input gets a 400 in OpenAI's error shape, and the server serves the next request."""
from __future__ import annotations

import httpx
import openai
import pytest

MSG = [{"role": "user", "content": "hi"}]
TOOLS = [{"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"tz": {"type": "string", "maxLength": 8}}, "required": ["tz"]}}}]


def _schema(schema) -> dict:
    return {"messages": MSG, "max_tokens": 4,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}


CASES = {
    "malformed schema": (_schema({"type": "object", "properties": {"a": {"type": "strin"}}}),
                         "response_format.json_schema.schema", "/properties/a"),
    "unsupported keyword": (_schema({"type": "object", "properties": {"a": {
                                "$ref": "https://example.com/remote.json"}}}),
                            "response_format.json_schema.schema", "/properties/a"),
    "invalid regex": ({"messages": MSG, "structured_outputs": {"regex": "(ab"}}, "structured_outputs.regex", None),
    "invalid grammar": ({"messages": MSG, "structured_outputs": {"grammar": "start: ("}},
                        "structured_outputs.grammar", None),
    "unknown tool name": ({"messages": MSG, "tools": TOOLS,
                           "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice", "nope"),
    "empty tools list": ({"messages": MSG, "tools": []}, "tools", None),
    "bad tool schema": ({"messages": MSG, "tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "properties": {"a": {"minimum": "x"}}}}}],
        "tool_choice": "required"}, "tools[0].function.parameters", "/properties/a"),
    "max_tokens zero": ({"messages": MSG, "max_tokens": 0}, "max_tokens", None),
    "max_tokens negative": ({"prompt": "hi", "max_tokens": -5}, "max_tokens", None),
    "max_tokens as text": ({"messages": MSG, "max_tokens": "ten"}, "max_tokens", None),
    "temperature as text": ({"messages": MSG, "temperature": "hot"}, "temperature", None),
    "messages not a list": ({"messages": "hi"}, "messages", None),
    "unknown role": ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role", None),
    "prompt too long": ({"prompt": "hello " * 9000, "max_tokens": 4}, None, "context"),
    "n above the limit": ({"messages": MSG, "n": 99}, "n", None),
}


def _check_shape(r: httpx.Response) -> dict:
    body = r.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_a_400_and_the_server_goes_on(server, name):
    body, param, needle = CASES[name]
    path = "/completions" if "prompt" in body else "/chat/completions"
    r = httpx.post(server.base_url + path, json={"model": server.model, **body}, timeout=120)
    assert r.status_code == 400, (r.status_code, r.text)
    err = _check_shape(r)
    if param is not None:
        assert err["param"] == param, err
    if needle is not None:
        assert needle in err["message"], err
    ok = httpx.post(server.base_url + "/completions", json={"model": server.model, "prompt": "Hi", "max_tokens": 1},
                    timeout=60)
    assert ok.status_code == 200


def test_invalid_json_body_and_streaming_errors_keep_the_shape(server):
    r = httpx.post(server.base_url + "/chat/completions", content=b"{nope", timeout=30,
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in _check_shape(r)["message"]
    # An error found before the first token still gets its status on a streaming request.
    body = {**_schema({"type": "strin"}), "stream": True}
    r = httpx.post(server.base_url + "/chat/completions", json=body, timeout=60)
    assert r.status_code == 400 and _check_shape(r)["param"] == "response_format.json_schema.schema"


def test_openai_client_sees_bad_request(server, openai_client):
    with pytest.raises(openai.BadRequestError) as err:
        openai_client.chat.completions.create(model=server.model, messages=MSG, max_tokens=0)
    assert err.value.status_code == 400

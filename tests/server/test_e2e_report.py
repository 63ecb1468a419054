"""``unsupported="report"`` over HTTP: the schema compiles without what cannot be enforced, and the response's
``lightllm_struct.unsupported`` names it by JSON pointer; by default the same schema is a 400 naming it."""
from __future__ import annotations

import json

import httpx
import jsonschema
import pytest

# uniqueItems over integers cannot be enforced by a grammar: refused by default, reported on request
SCHEMA = {"type": "object", "properties": {"ids": {"type": "array", "items": {"type": "integer", "minimum": 0},
                                                   "uniqueItems": True, "minItems": 1, "maxItems": 3}},
          "required": ["ids"], "additionalProperties": False}
LOOSENED = json.loads(json.dumps(SCHEMA).replace('"uniqueItems": true, ', ""))
RF = {"type": "json_schema", "json_schema": {"name": "ids", "schema": SCHEMA}}


def _post(server, endpoint: str, **body) -> httpx.Response:
    if endpoint == "chat":
        body.setdefault("messages", [{"role": "user", "content": "Some ids as JSON, please."}])
    else:
        body.setdefault("prompt", "Some ids as JSON:")
    path = "/v1/chat/completions" if endpoint == "chat" else "/v1/completions"
    return httpx.post(server.url + path, json={"model": server.model, "max_tokens": 40, "temperature": 0,
                                                **body}, timeout=300)


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_report_names_what_was_left_out(server, endpoint):
    r = _post(server, endpoint, response_format=RF, unsupported="report")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["lightllm_struct"] == {"unsupported": ["/properties/ids/uniqueItems"]}
    choice = body["choices"][0]
    text = choice["message"]["content"] if endpoint == "chat" else choice["text"]
    if choice["finish_reason"] == "stop":
        jsonschema.validate(json.loads(text), LOOSENED)  # everything else is still enforced


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_refused_by_default_and_no_extension_when_nothing_is_left_out(server, endpoint):
    r = _post(server, endpoint, response_format=RF)
    assert r.status_code == 400 and "/properties/ids/uniqueItems" in r.json()["error"]["message"]
    r = _post(server, endpoint, response_format={"type": "json_schema", "json_schema": {"name": "l", "schema": LOOSENED}},
              unsupported="report")
    assert r.status_code == 200 and "lightllm_struct" not in r.json()


def test_report_mode_is_validated(server):
    r = _post(server, "chat", response_format=RF, unsupported="ignore")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"

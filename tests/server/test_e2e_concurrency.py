"""32 concurrent mixed requests (constrained and free, streamed, cancelled midway) all end correctly, and the
KV pool is whole again afterwards."""
from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import jsonschema
import pytest

SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer", "minimum": 0,
                                                                           "maximum": 99}},
          "required": ["ok", "n"], "additionalProperties": False}
REGEX = "[a-z]{1,6}"
CHOICES = ["yes", "no", "maybe"]


def _chat(i: int, **kw) -> dict:
    return {"messages": [{"role": "user", "content": f"Request {i}: say something short."}],
            "temperature": 1.0, "seed": i, **kw}


def _sse_texts(r: httpx.Response, field: str, stop_after: int | None = None) -> tuple[str, str | None, int]:
    text, reason, n = "", None, 0
    for line in r.iter_lines():
        if not line or line == "data: [DONE]":
            continue
        event = json.loads(line.removeprefix("data: "))
        assert "error" not in event, event
        n += 1
        for c in event["choices"]:
            text += (c["delta"].get("content") or "") if field == "delta" else c["text"]
            reason = c["finish_reason"] or reason
        if stop_after is not None and n >= stop_after:
            return text, None, n  # leaving the with-block closes the connection: a disconnect
    return text, reason, n


def _one(base: str, i: int) -> str:
    kind = i % 8
    with httpx.Client(base_url=base, timeout=120) as http:
        if kind == 0:
            body = _chat(i, max_tokens=40, response_format={"type": "json_schema", "json_schema": {
                "name": "s", "schema": SCHEMA}})
            r = http.post("/chat/completions", json=body).json()
            assert r["choices"][0]["finish_reason"] == "stop", r["choices"][0]
            jsonschema.validate(json.loads(r["choices"][0]["message"]["content"]), SCHEMA)
        elif kind == 1:
            r = http.post("/completions", json={"prompt": f"Answer {i}:", "max_tokens": 5,
                                                "structured_outputs": {"choice": CHOICES}}).json()
            assert "error" not in r and r["choices"][0]["text"] in CHOICES, r
        elif kind == 2:
            r = http.post("/chat/completions", json=_chat(i, max_tokens=6)).json()
            assert r["usage"]["completion_tokens"] <= 6 and r["choices"][0]["finish_reason"] in ("stop", "length")
        elif kind in (3, 4):
            extra = {"structured_outputs": {"regex": REGEX}} if kind == 4 else {}
            with http.stream("POST", "/chat/completions", json=_chat(i, max_tokens=8, stream=True, **extra)) as r:
                text, reason, _ = _sse_texts(r, "delta")
            assert reason in ("stop", "length")
            if kind == 4:
                assert reason == "stop" and re.fullmatch(REGEX, text), text
        elif kind in (5, 7):
            path, body = ("/chat/completions", _chat(i, max_tokens=400, stream=True)) if kind == 5 else \
                ("/completions", {"prompt": "List:", "max_tokens": 400, "stream": True, "ignore_eos": True,
                                  "structured_outputs": {"json": {"type": "array", "minItems": 3,
                                                                  "items": {"type": "integer"}}}})
            with http.stream("POST", path, json=body) as r:
                _, reason, n = _sse_texts(r, "delta" if kind == 5 else "text", stop_after=2)
            assert reason is None and n == 2
            return "cancelled"
        else:
            with pytest.raises(httpx.ReadTimeout):
                http.post("/chat/completions", json=_chat(i, max_tokens=400, ignore_eos=True), timeout=1.5)
            return "cancelled"
    return "done"


def test_32_mixed_concurrent_requests_end_and_free_the_kv_pool(server):
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda i: _one(server.base_url, i), range(32)))
    assert results.count("cancelled") == 12 and results.count("done") == 20
    health = server.wait_idle()
    assert health["num_in_flight"] == 0 and health["num_running"] == 0 and health["num_waiting"] == 0
    assert health["kv_reclaimable_slots"] == health["kv_total_slots"], health
    # ...and the server still answers.
    r = httpx.post(server.base_url + "/completions", json={"prompt": "Hi", "max_tokens": 2}, timeout=60)
    assert r.status_code == 200

"""The real server, free text: models, health, metrics, and streaming equal to non-streaming."""
from __future__ import annotations

import httpx

PROMPT = [{"role": "user", "content": "Name three colours."}]


def test_models_and_health(server, openai_client):
    models = openai_client.models.list()
    assert [m.id for m in models.data] == [server.model]
    health = server.health()
    assert health["status"] == "ok" and health["kv_total_slots"] > 0


def test_chat_stream_reassembles_to_the_non_streamed_answer(server, openai_client):
    kw = dict(model=server.model, messages=PROMPT, max_tokens=12, temperature=0)
    full = openai_client.chat.completions.create(**kw)
    choice = full.choices[0]
    assert full.object == "chat.completion" and choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length") and choice.message.content
    assert full.usage.completion_tokens <= 12 and full.usage.prompt_tokens > 0

    chunks = list(openai_client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == choice.message.content and reasons == [choice.finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens


def test_completion_stream_equals_non_stream(server, openai_client):
    kw = dict(model=server.model, prompt="The capital of France is", max_tokens=8, temperature=0)
    full = openai_client.completions.create(**kw)
    assert full.object == "text_completion" and full.usage.completion_tokens <= 8
    chunks = list(openai_client.completions.create(**kw, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == full.choices[0].text
    assert chunks[-1].choices[0].finish_reason == full.choices[0].finish_reason


def test_raw_sse_framing_ends_with_done(server):
    body = {"model": server.model, "prompt": "Hello", "max_tokens": 3, "stream": True}
    with httpx.stream("POST", server.base_url + "/completions", json=body, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"


def test_metrics_expose_latency_and_engine_state(server):
    text = httpx.get(server.url + "/metrics", timeout=10).text
    for name in ("llms_time_to_first_token_seconds_count", "llms_inter_token_latency_seconds_count",
                 "llms_requests_running", "llms_requests_waiting_for_grammar", "llms_kv_cache_usage_ratio",
                 "llms_grammar_compile_seconds_total", "llms_grammar_cache_hits_total",
                 "llms_grammar_cache_entries", "llms_grammar_cache_bytes", "llms_tracking_cache_bytes"):
        assert name in text, name
    ttft = [line for line in text.splitlines() if line.startswith("llms_time_to_first_token_seconds_count")]
    assert float(ttft[0].split()[-1]) >= 1

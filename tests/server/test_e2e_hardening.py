"""Issue 11's attacks against the real server: none of them kills, freezes or starves it."""
from __future__ import annotations

import concurrent.futures as cf
import json
import time

import httpx

SEED_ATTACK = {"max_tokens": 2, "seed": 18446744073709551616, "messages": [{"role": "user", "content": "hi"}]}


def _stream_tokens(server, n: int) -> tuple[int, str]:
    body = {"model": server.model, "prompt": "Count: 1, 2,", "max_tokens": n, "temperature": 0, "stream": True,
            "ignore_eos": True}
    pieces, reason = [], None
    with httpx.stream("POST", server.base_url + "/completions", json=body, timeout=120) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                choice = json.loads(line[6:])["choices"][0]
                pieces.append(choice["text"])
                reason = choice["finish_reason"] or reason
    return len(pieces), reason


def test_out_of_range_seeds_are_400s_while_a_stream_runs_and_health_stays_200(server):
    url = server.base_url + "/chat/completions"
    with cf.ThreadPoolExecutor(4) as pool:
        stream = pool.submit(_stream_tokens, server, 24)
        time.sleep(0.3)
        codes = []
        for i in range(15):
            codes.append(httpx.post(url, json=SEED_ATTACK, timeout=30).status_code)
            # the browser-style cross-site POST: same body, text/plain
            plain = httpx.post(url, content=json.dumps(SEED_ATTACK), headers={"content-type": "text/plain"},
                               timeout=30)
            codes.append(plain.status_code)
            assert httpx.get(server.url + "/health", timeout=10).status_code == 200
        n_chunks, reason = stream.result(timeout=120)
    assert codes == [400, 415] * 15
    r = httpx.post(url, json=SEED_ATTACK, timeout=30)
    assert r.json()["error"]["param"] == "seed" and r.json()["error"]["code"] == "invalid_request"
    assert reason == "length" and n_chunks >= 1
    health = server.health()
    assert health["status"] == "ok"
    ok = httpx.post(url, json={**SEED_ATTACK, "seed": 7}, timeout=60)
    assert ok.status_code == 200


def test_wrong_model_oversized_body_and_lone_surrogate_are_clean_4xx(server):
    url = server.base_url + "/chat/completions"
    r = httpx.post(url, json={**SEED_ATTACK, "seed": 1, "model": "gpt-4o"}, timeout=30)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    big = {"model": server.model, "prompt": "x" * (9 << 20), "max_tokens": 1}
    r = httpx.post(server.base_url + "/completions", json=big, timeout=60)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    raw = b'{"messages": [{"role": "user", "content": "\\ud800"}], "max_tokens": 1}'
    r = httpx.post(url, content=raw, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 400 and "surrogate" in r.json()["error"]["message"]
    assert server.health()["status"] == "ok"


def test_empty_languages_and_oversized_constraints_are_4xx_before_any_token(server):
    url = server.base_url + "/completions"
    for so, code in [({"grammar": 'start: start "a"'}, "empty_language"), ({"regex": r"[^\s\S]"}, "empty_language"),
                     ({"choice": ["x" * 700_000, "y" * 700_000]}, "grammar_too_complex")]:
        r = httpx.post(url, json={"prompt": "hi", "max_tokens": 4, "structured_outputs": so}, timeout=120)
        err = r.json()["error"]
        assert r.status_code == (413 if code == "grammar_too_complex" else 400) and err["code"] == code, r.text
        assert err["param"].startswith("structured_outputs"), err
    assert server.health()["status"] == "ok"


def test_a_pathological_tool_schema_is_a_typed_error_while_health_and_a_stream_stay_responsive(server):
    # issue 11: a tool with 250 optional parameters froze the whole server (/health included) for 17 s. This
    # one is short (its prompt fits the context) but its conversion alone takes minutes (a multipleOf over a
    # 1,500-digit range: the automaton's work grows with the square of the digits), so it must end at the
    # deadline in one of the server's compile workers
    params = {"type": "object", "properties": {"n": {"type": "integer", "minimum": -10 ** 1500,
                                                     "maximum": 10 ** 1500, "multipleOf": 7}}}
    body = {"model": server.model, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": params}}],
            "tool_choice": "required"}
    before = server.health()["server_conversions_total"]
    with cf.ThreadPoolExecutor(4) as pool:
        attack = pool.submit(httpx.post, server.base_url + "/chat/completions", json=body, timeout=120)
        stream = pool.submit(_stream_tokens, server, 16)
        slowest = 0.0
        while not attack.done():
            start = time.monotonic()
            assert httpx.get(server.url + "/health", timeout=10).status_code == 200
            slowest = max(slowest, time.monotonic() - start)
            time.sleep(0.2)
        n_chunks, reason = stream.result(timeout=120)
    r = attack.result()
    err = r.json()["error"]
    assert r.status_code in (413, 422) and err["code"] in ("grammar_compile_timeout", "grammar_too_complex"), r.text
    assert err["param"].startswith("tools")
    assert slowest < 2.0, f"/health took {slowest:.2f} s during the attack"
    assert reason == "length" and n_chunks >= 1
    health = server.health()
    assert health["server_conversions_total"] == before + 1  # it was converted in the server's workers
    assert health["status"] == "ok"

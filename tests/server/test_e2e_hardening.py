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

"""API key, Host check, CORS, body size, content type, model check and lone surrogates at the HTTP edge."""
from __future__ import annotations

import json

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from lightllm_struct.server.errors import check_model, install_error_handlers, parse_json_body
from lightllm_struct.server.security import AccessPolicy, install_access_policy, read_body

MODEL = "m"


def _client(**policy) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    pol = AccessPolicy(**policy)
    install_access_policy(app, pol)

    @app.post("/v1/echo")
    async def echo(request: Request):
        body = parse_json_body(await read_body(request, limit=pol.max_body_bytes), request.headers.get("content-type"))
        check_model(body, MODEL)
        return {"ok": True}

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    return TestClient(app, raise_server_exceptions=False)


def _error(r) -> dict:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def test_api_key_is_required_everywhere_but_health():
    c = _client(api_key="sekrit")
    r = c.post("/v1/echo", json={})
    assert r.status_code == 401 and _error(r)["code"] == "invalid_api_key"
    assert "sekrit" not in r.text and r.headers["www-authenticate"] == "Bearer"
    assert c.post("/v1/echo", json={}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.post("/v1/echo", json={}, headers={"Authorization": "Bearer sekrit"}).status_code == 200
    assert c.get("/health").status_code == 200


def test_host_header_is_checked_when_hosts_are_listed():
    c = _client(allowed_hosts=("localhost", "127.0.0.1"))
    assert c.post("/v1/echo", json={}, headers={"Host": "127.0.0.1:8000"}).status_code == 200
    r = c.post("/v1/echo", json={}, headers={"Host": "evil.example"})
    assert r.status_code == 400 and _error(r)["code"] == "invalid_host"


def test_cors_is_off_unless_origins_are_allowed():
    origin = {"Origin": "https://app.example"}
    off = _client().post("/v1/echo", json={}, headers=origin)
    assert "access-control-allow-origin" not in off.headers
    on = _client(allowed_origins=("https://app.example",))
    assert on.post("/v1/echo", json={}, headers=origin).headers["access-control-allow-origin"] == "https://app.example"
    other = on.post("/v1/echo", json={}, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    preflight = _client(api_key="k", allowed_origins=("https://app.example",)).options(
        "/v1/echo", headers={**origin, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200  # a browser's preflight carries no key


def test_json_bodies_only_as_application_json():
    c = _client()
    for ctype in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"content-type": ctype} if ctype else {}
        r = c.post("/v1/echo", content=b'{"max_tokens": 2}', headers=headers)
        assert r.status_code == 415 and _error(r)["code"] == "unsupported_media_type", ctype
    ok = c.post("/v1/echo", content=b"{}", headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


def test_body_over_the_limit_is_413_declared_or_streamed():
    c = _client(max_body_bytes=1000)
    r = c.post("/v1/echo", json={"prompt": "x" * 2000})
    assert r.status_code == 413 and _error(r)["code"] == "request_too_large"

    def chunks():  # no Content-Length: the limit holds on what actually arrives
        for _ in range(10):
            yield b" " * 200

    r = c.post("/v1/echo", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_another_model_is_404_model_not_found():
    c = _client()
    r = c.post("/v1/echo", json={"model": "gpt-9"})
    assert r.status_code == 404 and _error(r)["code"] == "model_not_found" and _error(r)["param"] == "model"
    assert c.post("/v1/echo", json={"model": MODEL}).status_code == 200
    assert c.post("/v1/echo", json={}).status_code == 200


@pytest.mark.parametrize("raw", [b'{"prompt": "\\ud800"}', b'{"a": ["ok", {"\\uDFFF": 1}]}'])
def test_lone_surrogates_are_400(raw):
    r = _client().post("/v1/echo", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400 and "surrogate" in _error(r)["message"]


def test_paired_surrogates_are_text():
    raw = json.dumps({"prompt": "\U0001F600"}).encode()  # ensure_ascii: "\ud83d\ude00"
    assert _client().post("/v1/echo", content=raw, headers={"content-type": "application/json"}).status_code == 200


def test_deep_nesting_is_400_not_500():
    raw = b"[" * 100_000 + b"]" * 100_000
    r = _client().post("/v1/echo", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400 and "RecursionError" not in r.text

"""Every failure becomes OpenAI's error shape with the right status; never FastAPI's 422 body."""
from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from lightllm_struct.errors import EngineOverloadedError, InvalidRequestError
from lightllm_struct.engine.matcher_like import SampledTokenRejected
from lightllm_struct.grammar.errors import SchemaError
from lightllm_struct.server.errors import install_error_handlers, parse_json_body


class Body(BaseModel):
    max_tokens: int


def _client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/typed")
    async def typed(body: Body):
        return {"ok": body.max_tokens}

    @app.post("/raw")
    async def raw(kind: str):
        raise {"schema": SchemaError("bad type", pointer="/properties/a", param="response_format.json_schema.schema"),
               "busy": EngineOverloadedError("busy"), "bad": InvalidRequestError("nope", param="stop"),
               "token": SampledTokenRejected("rejected 5"), "json": None}[kind] or parse_json_body(b"{")

    @app.post("/boom")
    async def boom():
        raise RuntimeError("kaput")

    return TestClient(app, raise_server_exceptions=False)


def _shape(body):
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_validation_error_is_400_in_openai_shape():
    r = _client().post("/typed", json={"max_tokens": "many"})
    assert r.status_code == 400
    err = _shape(r.json())
    assert err["param"] == "max_tokens" and err["type"] == "invalid_request_error"


def test_typed_errors_map_mechanically():
    c = _client()
    r = c.post("/raw", params={"kind": "schema"})
    err = _shape(r.json())
    assert r.status_code == 400 and err["param"] == "response_format.json_schema.schema"
    assert "/properties/a" in err["message"] and err["code"] == "invalid_schema"
    busy = c.post("/raw", params={"kind": "busy"})
    assert busy.status_code == 503 and busy.headers["retry-after"].isdigit()
    assert _shape(busy.json())["code"] == "server_overloaded"
    r = c.post("/raw", params={"kind": "token"})  # an engine-internal mismatch is never the client's fault
    assert r.status_code == 500 and _shape(r.json())["type"] == "internal_error"
    r = c.post("/raw", params={"kind": "json"})
    assert r.status_code == 400
    assert r.status_code == 400 and "not valid JSON" in _shape(r.json())["message"]


def test_unexpected_errors_are_500_in_shape_and_404_too():
    c = _client()
    r = c.post("/boom")
    err = _shape(r.json())  # Python internals stay in the log
    assert r.status_code == 500 and "kaput" not in err["message"] and "RuntimeError" not in err["message"]
    assert err["code"] == "internal_error"
    r = c.get("/nowhere")
    assert r.status_code == 404 and _shape(r.json())["type"] == "not_found_error"


def test_codes_are_stable_strings_never_class_names():
    from lightllm_struct.grammar.errors import CompileTimeout, GrammarTooComplex, RegexError
    from lightllm_struct.server.errors import body_for

    for exc, code in [(SchemaError("x", pointer="/a"), "invalid_schema"), (RegexError("x"), "invalid_regex"),
                      (GrammarTooComplex("x"), "grammar_too_complex"), (CompileTimeout("x"), "grammar_compile_timeout"),
                      (InvalidRequestError("x"), "invalid_request"), (RecursionError(), "nesting_too_deep")]:
        status, body = body_for(exc)
        assert body["error"]["code"] == code and status < 500, (exc, body)

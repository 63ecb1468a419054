"""Every failure leaves the server in OpenAI's error shape ``{"error": {"message", "type", "param", "code"}}``.

The mapping is mechanical: a ``LightLLMStructError`` carries its own ``http_status``, ``error_type`` and
``param``; pydantic validation errors and malformed JSON become 400 (never FastAPI's default 422 body);
anything unexpected becomes a 500 with a message, and the server goes on serving.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from lightllm_struct.errors import (EngineDeadError, EngineOverloadedError, InvalidRequestError,
                                    LightLLMStructError, PromptTooLongError)
from lightllm_struct.grammar import errors as grammar_errors

logger = logging.getLogger(__name__)

# Stable OpenAI-style codes (clients branch on them): the first class of an error's MRO found here wins; a
# class may also name its own with a ``code`` attribute. Never a Python class name.
_CODES: dict[type, str] = {
    PromptTooLongError: "context_length_exceeded",
    grammar_errors.UnsupportedSchemaFeature: "unsupported_schema_feature",
    grammar_errors.SchemaError: "invalid_schema",
    grammar_errors.RegexError: "invalid_regex",
    grammar_errors.GrammarSyntaxError: "invalid_grammar",
    grammar_errors.GrammarConflictError: "grammar_conflict",
    grammar_errors.GrammarTooComplex: "grammar_too_complex",
    grammar_errors.EmptyLanguageError: "empty_language",
    grammar_errors.CompileTimeout: "grammar_compile_timeout",
    grammar_errors.GrammarError: "invalid_constraint",
    EngineOverloadedError: "server_overloaded",
    EngineDeadError: "engine_dead",
    InvalidRequestError: "invalid_request",
    LightLLMStructError: "internal_error",
}
_HTTP_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
               415: "invalid_request_error", 429: "rate_limit_exceeded", 503: "server_overloaded"}
_HTTP_CODES = {401: "invalid_api_key", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
               413: "request_too_large", 415: "unsupported_media_type"}
RETRY_AFTER_S = 1  # what a 503 (overloaded) tells clients to wait before retrying


def error_body(message: str, *, type: str, param: str | None = None, code: str | None = None) -> dict:
    """The OpenAI error object."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_code(exc: LightLLMStructError) -> str:
    """The stable code of ``exc``: its class's own ``code``, else the nearest mapped base's."""
    for cls in type(exc).__mro__:
        if "code" in vars(cls) and isinstance(vars(cls)["code"], str):
            return vars(cls)["code"]
        if cls in _CODES:
            return _CODES[cls]
    return "internal_error"


def body_for(exc: BaseException) -> tuple[int, dict]:
    """The (status, body) a server answers with for ``exc``."""
    if isinstance(exc, LightLLMStructError):
        return exc.http_status, error_body(exc.message, type=exc.error_type, param=exc.param,
                                           code=error_code(exc))
    if isinstance(exc, ValidationError):
        return 400, validation_body(exc.errors())
    if isinstance(exc, RecursionError):
        return 400, error_body("the request nests too deeply", type="invalid_request_error",
                               code="nesting_too_deep")
    if isinstance(exc, UnicodeError):
        return 400, error_body("the request holds text that is not valid Unicode (a lone surrogate?)",
                               type="invalid_request_error", code="invalid_encoding")
    # Python internals (class names, messages, paths) stay in the log.
    return 500, error_body("internal error (see the server log)", type="internal_error", code="internal_error")


def validation_body(errors: list[dict[str, Any]]) -> dict:
    """Turn pydantic's error list into one message naming the first offending parameter."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    # FastAPI prefixes locations with "body"; the parameter name is what follows.
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    # Drop pydantic's union-branch tags ("str", "list[...]", "function-after[...]") from the path.
    loc = [p for p in loc if not (p.endswith("]") or p in ("str", "int", "float", "bool", "list", "dict"))]
    param = ".".join(loc) or None
    msg = first.get("msg", "invalid value")
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    message = f"{param}: {msg}{more}" if param else f"{msg}{more}"
    return error_body(message, type="invalid_request_error", param=param, code="invalid_value")


def error_response(exc: BaseException) -> JSONResponse:
    status, body = body_for(exc)
    if status >= 500:
        logger.error("request failed", exc_info=exc)
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    return JSONResponse(body, status_code=status, headers=headers)


def sse_error(exc: BaseException) -> str:
    """An error in the middle of a stream: the status line is gone, so it travels as an SSE event."""
    return f"data: {json.dumps(body_for(exc)[1])}\n\n"


class ModelNotFound(InvalidRequestError):
    """The request names a model this server does not serve (OpenAI answers 404 ``model_not_found``)."""

    http_status = 404
    code = "model_not_found"


def check_model(body: Any, served: str) -> None:
    """Refuse a request for another model; one that names none gets the served model.

    Raises
    ------
    ModelNotFound
        ``body["model"]`` is given and is not ``served``.
    """
    model = body.get("model") if isinstance(body, dict) else None
    if model is not None and model != served:
        shown = model if isinstance(model, str) else type(model).__name__
        raise ModelNotFound(f"the model {shown[:200]!r} does not exist here; this server serves {served!r}",
                            param="model")


class UnsupportedMediaType(InvalidRequestError):
    """A body not sent as ``application/json`` (a browser's cross-site ``text/plain`` POST, for one)."""

    http_status = 415
    code = "unsupported_media_type"


def parse_json_body(raw: bytes, content_type: str | None = "application/json") -> Any:
    """The JSON value of a request body sent as ``application/json``.

    Raises
    ------
    UnsupportedMediaType
        Another content type: a form or ``text/plain`` POST is what a web page can send cross-site without
        a CORS preflight, so refusing it keeps other sites' pages from driving the server.
    InvalidRequestError
        The body is not valid JSON.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaType(f"request bodies must be sent as application/json, not {media or 'none'!r}")
    try:
        value = json.loads(raw)
    except RecursionError:
        raise InvalidRequestError("the request body nests too deeply") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"the request body is not valid JSON: {exc}") from None
    if b"\\ud" in raw.lower():  # only a \uD800-\uDFFF escape can smuggle in a lone surrogate
        _refuse_lone_surrogates(value)
    return value


def _refuse_lone_surrogates(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidRequestError("the request holds a lone UTF-16 surrogate (\\uD800-\\uDFFF "
                                          "without its pair), which is not text") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception class a handler can raise to the OpenAI error shape."""

    async def on_ours(_: Request, exc: LightLLMStructError) -> JSONResponse:
        return error_response(exc)

    async def on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_body(list(exc.errors())), status_code=400)

    async def on_pydantic(_: Request, exc: ValidationError) -> JSONResponse:
        return JSONResponse(validation_body(exc.errors()), status_code=400)

    async def on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = _HTTP_TYPES.get(exc.status_code, "invalid_request_error" if exc.status_code < 500
                               else "internal_error")
        return JSONResponse(error_body(str(exc.detail), type=kind, code=_HTTP_CODES.get(exc.status_code)),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    async def on_any(_: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)

    app.add_exception_handler(LightLLMStructError, on_ours)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(ValidationError, on_pydantic)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_any)

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

from lightllm_struct.errors import InvalidRequestError, LightLLMStructError, PromptTooLongError
from lightllm_struct.grammar.errors import InvalidTokenError

logger = logging.getLogger(__name__)

_CODES: dict[type, str] = {PromptTooLongError: "context_length_exceeded"}
_HTTP_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               405: "invalid_request_error", 429: "rate_limit_exceeded", 503: "server_overloaded"}


def error_body(message: str, *, type: str, param: str | None = None, code: str | None = None) -> dict:
    """The OpenAI error object."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_code(exc: LightLLMStructError) -> str | None:
    for cls in type(exc).__mro__:
        if cls in _CODES:
            return _CODES[cls]
    return getattr(exc, "code", None) or type(exc).__name__


def body_for(exc: BaseException) -> tuple[int, dict]:
    """The (status, body) a server answers with for ``exc``."""
    if isinstance(exc, InvalidTokenError):
        # The engine sampled a token its own mask forbade: never the client's fault, whatever its base says.
        return 500, error_body(f"internal error: {exc.message}", type="internal_error", code=error_code(exc))
    if isinstance(exc, LightLLMStructError):
        return exc.http_status, error_body(exc.message, type=exc.error_type, param=exc.param,
                                           code=error_code(exc))
    if isinstance(exc, ValidationError):
        return 400, validation_body(exc.errors())
    return 500, error_body(f"internal error: {type(exc).__name__}: {exc}", type="internal_error")


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
        logger.exception("request failed", exc_info=exc)
    return JSONResponse(body, status_code=status)


def sse_error(exc: BaseException) -> str:
    """An error in the middle of a stream: the status line is gone, so it travels as an SSE event."""
    return f"data: {json.dumps(body_for(exc)[1])}\n\n"


def parse_json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"the request body is not valid JSON: {exc}") from None


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
        return JSONResponse(error_body(str(exc.detail), type=kind), status_code=exc.status_code)

    async def on_any(_: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)

    app.add_exception_handler(LightLLMStructError, on_ours)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(ValidationError, on_pydantic)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_any)

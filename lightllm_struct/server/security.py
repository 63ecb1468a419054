"""Who may talk to the server and how much they may send: API key, Host check, CORS, body size.

All off by default except the body limit, which suits a server bound to loopback; ``--api-key`` (or
``LLMS_API_KEY``), ``--allowed-hosts`` and ``--allowed-origins`` turn the rest on. Refusals use OpenAI's error
shape, like every other error of the server.
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers

from lightllm_struct.errors import InvalidRequestError
from lightllm_struct.server.errors import error_body

DEFAULT_MAX_BODY_BYTES = 8 << 20
# Open without a key: load balancers and orchestrators probe it, and it reveals no request data.
_OPEN_PATHS = frozenset({"/health"})


class RequestTooLarge(InvalidRequestError):
    """A body over the server's limit (``--max-body-bytes``)."""

    http_status = 413
    code = "request_too_large"


@dataclass(frozen=True, kw_only=True)
class AccessPolicy:
    """The server's access rules.

    Attributes
    ----------
    api_key:
        Required as ``Authorization: Bearer <key>`` on every route but /health; None = no key.
    allowed_hosts:
        Host header values accepted (``"*"`` any); None = any. Guards against DNS rebinding.
    allowed_origins:
        Origins given CORS access; None = no CORS headers at all (browsers then refuse cross-site reads).
    max_body_bytes:
        Largest request body read; a larger one is refused with 413 before it is read.
    """

    api_key: str | None = None
    allowed_hosts: tuple[str, ...] | None = None
    allowed_origins: tuple[str, ...] | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


def _refuse(status: int, message: str, *, type: str, code: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(message, type=type, code=code), status_code=status, headers=headers)


def _host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return "*" in allowed or host in allowed or name in allowed


def _key_matches(header: str, key: str) -> bool:
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


class _Guard:
    """Pure ASGI (not ``BaseHTTPMiddleware``, which hides client disconnects from the routes behind it)."""

    def __init__(self, app, policy: AccessPolicy) -> None:
        self.app, self.policy = app, policy

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(Headers(scope=scope), scope.get("path", ""), scope.get("method", ""))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, headers: Headers, path: str, method: str) -> JSONResponse | None:
        policy = self.policy
        if policy.allowed_hosts is not None and not _host_allowed(headers.get("host", ""), policy.allowed_hosts):
            return _refuse(400, "this Host header is not served here", type="invalid_request_error",
                           code="invalid_host")
        if policy.api_key is not None and path not in _OPEN_PATHS and method != "OPTIONS" \
                and not _key_matches(headers.get("authorization", ""), policy.api_key):
            return _refuse(401, "invalid or missing API key: send 'Authorization: Bearer <key>'",
                           type="invalid_request_error", code="invalid_api_key")
        return None


def install_access_policy(app: FastAPI, policy: AccessPolicy) -> None:
    """Check Host and API key before any route runs, and add CORS when origins are allowed."""
    app.add_middleware(_Guard, policy=policy)
    if policy.allowed_origins:
        # Added after the guard, so it runs first: a preflight gets its CORS answer without a key.
        app.add_middleware(CORSMiddleware, allow_origins=list(policy.allowed_origins), allow_methods=["*"],
                           allow_headers=["*"])


async def read_body(request: Request, *, limit: int) -> bytes:
    """The request body, refused with 413 once it passes ``limit`` bytes (announced or actually sent).

    Raises
    ------
    RequestTooLarge
        The body is, or says it is, over ``limit`` bytes.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"the request body is {int(declared)} bytes; this server takes at most {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"the request body is over {limit} bytes, the most this server takes")
        chunks.append(chunk)
    return b"".join(chunks)

"""The one base of every typed error the project raises.

Each subsystem defines its own subclasses (``grammar.errors``, ``models.errors``, ...); the server maps
them mechanically onto HTTP status codes and OpenAI's error shape through ``http_status`` and ``error_type``.
"""
from __future__ import annotations


class LightLLMStructError(Exception):
    """Base of all lightllm-struct errors.

    Attributes
    ----------
    http_status:
        The status an HTTP front end answers with when this error reaches it.
    error_type:
        OpenAI's ``error.type`` string for it.
    param:
        The request parameter the error is about (``response_format.json_schema.schema``), if any.
    """

    http_status: int = 500
    error_type: str = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequestError(LightLLMStructError):
    """A request whose parameters are wrong (bad sampling values, empty prompt, unknown tool...)."""

    http_status = 400
    error_type = "invalid_request_error"


class PromptTooLongError(InvalidRequestError):
    """The prompt (plus max_tokens) does not fit the model's context or the KV cache."""


class BudgetTooSmallError(InvalidRequestError):
    """``max_tokens`` (or the context left after the prompt) is below the shortest answer the constraint allows.

    Attributes
    ----------
    min_tokens:
        The fewest tokens any complete answer can take (a lower bound: the shortest answer's bytes over the
        longest token's bytes, rounded up), so a budget below it can never finish.
    """

    def __init__(self, message: str, *, min_tokens: int, param: str | None = "max_tokens") -> None:
        super().__init__(message, param=param)
        self.min_tokens = min_tokens


class EngineOverloadedError(LightLLMStructError):
    """The engine cannot take more requests right now."""

    http_status = 503
    error_type = "server_overloaded"


class EngineDeadError(LightLLMStructError):
    """The engine loop (or a tensor-parallel rank) died; nothing more can be served."""

    http_status = 500
    error_type = "internal_error"

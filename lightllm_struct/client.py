"""One-line structured generation: ``generate(prompt, schema=MyModel)``, against a server or in-process.

With ``base_url`` the call goes to a lightllm-struct (or any OpenAI-compatible) server as a chat completion
with ``response_format`` / ``structured_outputs``; without it, the model runs in this process through
``LLM`` (loaded once per model and kept for later calls). The result is parsed: a pydantic instance for a
pydantic class, the JSON value for a dict or JSON-string schema, the text otherwise.
"""
from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from lightllm_struct.errors import InvalidRequestError, LightLLMStructError
from lightllm_struct.request import Constraint
from lightllm_struct.shorthand import is_model_class, to_constraint

Prompt = str | Sequence[dict[str, Any]]
_SAMPLING_KEYS = {"max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "ignore_eos"}


class ClientError(LightLLMStructError):
    """Base of errors the client raises about a call (not about the arguments it was given)."""


class ServerError(ClientError):
    """The server answered with an error; ``http_status``, ``error_type`` and ``param`` are the server's."""

    def __init__(self, message: str, *, status: int, error_type: str | None, param: str | None) -> None:
        super().__init__(message, param=param)
        self.http_status = status
        self.error_type = error_type or "error"


class IncompleteOutputError(ClientError):
    """Generation stopped at max_tokens before the constrained output was complete; ``text`` has it."""

    def __init__(self, message: str, *, text: str) -> None:
        super().__init__(message)
        self.text = text


class OutputParseError(ClientError):
    """The output does not parse as the requested type (possible only against a server that does not
    enforce the constraint)."""


@dataclass(frozen=True)
class _Call:
    """A fully-resolved call: what to send and how to read the answer."""

    messages: list[dict[str, Any]]
    body: dict[str, Any]        # the constraint + sampling part of a chat-completions body
    constraint: Constraint | None  # for the in-process engine
    parse_as: Any               # None (text), "json", or a pydantic model class


_STRUCTURED_KEY = {"regex": "regex", "lark": "grammar", "choice": "choice"}  # vLLM's structured_outputs


def build_call(prompt: Prompt, *, schema: Any = None, regex: str | None = None, grammar: str | None = None,
               choices: Sequence[str] | None = None, sampling: dict[str, Any]) -> _Call:
    """Validate the arguments of ``generate`` and turn them into a request.

    Raises
    ------
    InvalidRequestError
        Zero or more than one constraint, a schema that is not JSON, an unknown sampling option.
    """
    constraint = to_constraint(schema=schema, regex=regex, grammar=grammar, choices=choices)
    unknown = set(sampling) - _SAMPLING_KEYS
    if unknown:
        raise InvalidRequestError(f"unknown sampling option(s) {sorted(unknown)}; known: {sorted(_SAMPLING_KEYS)}")
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    else:
        messages = [dict(m) for m in prompt]
    body: dict[str, Any] = dict(sampling)
    parse_as = None
    if constraint is not None and constraint.kind == "json_schema":
        parse_as = schema if is_model_class(schema) else "json"
        name = schema.__name__ if is_model_class(schema) else "response"
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": name, "schema": constraint.spec, "strict": True}}
    elif constraint is not None:
        body["structured_outputs"] = {_STRUCTURED_KEY[constraint.kind]: constraint.spec}
    return _Call(messages=messages, body=body, constraint=constraint, parse_as=parse_as)


def parse_output(call: _Call, text: str, finish_reason: str | None) -> Any:
    """The typed result of ``text``.

    Raises
    ------
    IncompleteOutputError
        A constrained output cut off by max_tokens.
    OutputParseError
        An output that does not parse as the requested type.
    """
    if call.parse_as is None:
        return text
    if finish_reason == "length":
        raise IncompleteOutputError("the output hit max_tokens before the JSON was complete; raise max_tokens",
                                    text=text)
    try:
        if call.parse_as == "json":
            return json.loads(text)
        return call.parse_as.model_validate_json(text)
    except (json.JSONDecodeError, ValidationError) as exc:
        raise OutputParseError(f"the output does not parse: {exc}") from exc


# ---------------------------------------------------------------- over HTTP
def _api_root(base_url: str) -> str:
    root = base_url.rstrip("/")
    return root if root.endswith("/v1") else root + "/v1"


def _raise_for_error(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        err = response.json()["error"]
        message, kind, param = err.get("message"), err.get("type"), err.get("param")
    except (ValueError, KeyError, TypeError, AttributeError):
        message, kind, param = response.text[:500], None, None
    raise ServerError(f"server answered {response.status_code}: {message}", status=response.status_code,
                      error_type=kind, param=param)


def _http_body(call: _Call, model: str | None) -> dict[str, Any]:
    # No model named: the server answers with the one it serves (naming another is a 404 model_not_found).
    return {**({"model": model} if model else {}), "messages": call.messages, **call.body}


def _read_choice(call: _Call, response: httpx.Response) -> Any:
    _raise_for_error(response)
    choice = response.json()["choices"][0]
    return parse_output(call, choice["message"].get("content") or "", choice.get("finish_reason"))


def _http_generate(call: _Call, base_url: str, model: str | None, timeout: float) -> Any:
    with httpx.Client(timeout=timeout) as http:
        return _read_choice(call, http.post(f"{_api_root(base_url)}/chat/completions", json=_http_body(call, model)))


async def _http_agenerate(call: _Call, base_url: str, model: str | None, timeout: float) -> Any:
    async with httpx.AsyncClient(timeout=timeout) as http:
        response = await http.post(f"{_api_root(base_url)}/chat/completions", json=_http_body(call, model))
        return _read_choice(call, response)


# ---------------------------------------------------------------- in-process
class _LocalModels:
    """Loaded ``LLM`` objects by model path: loading takes seconds, so it happens once per process."""

    def __init__(self) -> None:
        self._llms: dict[str | None, Any] = {}
        self._lock = threading.Lock()

    def get(self, model: str | None) -> Any:
        with self._lock:
            if model not in self._llms:
                from lightllm_struct.llm import LLM

                self._llms[model] = LLM(model=model)
            return self._llms[model]


_LOCAL = _LocalModels()


def _local_generate(calls: Sequence[_Call], model: str | None) -> list[Any]:
    import torch

    from lightllm_struct.request import SamplingParams

    llm = _LOCAL.get(model)
    # The model returns inference tensors that the sampler masks in place: only legal in inference mode.
    with torch.inference_mode():
        outputs = llm.chat([c.messages for c in calls],
                           [SamplingParams(**{k: v for k, v in c.body.items() if k in _SAMPLING_KEYS})
                            for c in calls],
                           constraints=[c.constraint for c in calls])
    results = []
    for call, out in zip(calls, outputs):
        if out.finish_reason == "error":
            if isinstance(out.exception, LightLLMStructError):
                raise out.exception  # typed (a budget below the shortest answer: BudgetTooSmallError)
            raise ClientError(f"generation failed: {out.error}")
        results.append(parse_output(call, out.text, out.finish_reason))
    return results


# ---------------------------------------------------------------- public API
def generate(prompt: Prompt, *, schema: Any = None, regex: str | None = None, grammar: str | None = None,
             choices: Sequence[str] | None = None, base_url: str | None = None, model: str | None = None,
             timeout: float = 600.0, **sampling: Any) -> Any:
    """Generate one answer to ``prompt``, constrained by at most one of ``schema``/``regex``/``grammar``/``choices``.

    Parameters
    ----------
    prompt:
        A user message, or a list of chat messages (``{"role", "content"}`` dicts).
    schema:
        A JSON schema (dict or JSON string) or a pydantic model class.
    regex, grammar, choices:
        A regular expression, a Lark grammar, or a list of allowed strings.
    base_url:
        A server (``http://host:port`` or ``.../v1``); None runs the model in this process.
    model:
        The model id on the server, or the model path / GGUF file in-process (None = the default model).
    timeout:
        Seconds to wait for a server.
    **sampling:
        max_tokens, temperature, top_p, top_k, seed, stop, ignore_eos.

    Returns
    -------
    A pydantic instance for a pydantic ``schema``, the parsed JSON value for a dict/string schema, the text
    otherwise.

    Raises
    ------
    InvalidRequestError
        Bad arguments (checked before any call).
    ServerError
        The server answered with an error (its status, type and param are kept).
    IncompleteOutputError
        A constrained output cut off by max_tokens.
    """
    call = build_call(prompt, schema=schema, regex=regex, grammar=grammar, choices=choices, sampling=sampling)
    if base_url is not None:
        return _http_generate(call, base_url, model, timeout)
    return _local_generate([call], model)[0]


async def agenerate(prompt: Prompt, *, schema: Any = None, regex: str | None = None, grammar: str | None = None,
                    choices: Sequence[str] | None = None, base_url: str | None = None, model: str | None = None,
                    timeout: float = 600.0, **sampling: Any) -> Any:
    """``generate`` for asyncio: the same arguments, results and errors."""
    call = build_call(prompt, schema=schema, regex=regex, grammar=grammar, choices=choices, sampling=sampling)
    if base_url is not None:
        return await _http_agenerate(call, base_url, model, timeout)
    return (await asyncio.to_thread(_local_generate, [call], model))[0]


def generate_batch(prompts: Sequence[Prompt], *, schema: Any = None, regex: str | None = None,
                   grammar: str | None = None, choices: Sequence[str] | None = None, base_url: str | None = None,
                   model: str | None = None, timeout: float = 600.0, **sampling: Any) -> list[Any]:
    """``generate`` for many prompts at once (one batch in-process, concurrent requests to a server).

    Returns the results in the order of ``prompts``; the first error raises.
    """
    calls = [build_call(p, schema=schema, regex=regex, grammar=grammar, choices=choices, sampling=sampling)
             for p in prompts]
    if base_url is None:
        return _local_generate(calls, model)

    async def run_all() -> list[Any]:
        return list(await asyncio.gather(*(_http_agenerate(c, base_url, model, timeout) for c in calls)))

    return asyncio.run(run_all())

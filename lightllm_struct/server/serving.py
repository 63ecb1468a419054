"""What chat and completions share: the server's state, request building, and running a request.

A request is built and fully validated here before the engine sees it (sampling values, prompt length
against the context, the constraint); then ``start`` submits it and waits for its first output, so that
errors the engine finds before the first token (a grammar that fails to compile) still get their HTTP
status rather than a broken stream.
"""
from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import Request as HTTPRequest

from lightllm_struct.engine.async_engine import AsyncEngine
from lightllm_struct.errors import InvalidRequestError, LightLLMStructError, PromptTooLongError
from lightllm_struct.request import Request, RequestOutput, SamplingParams
from lightllm_struct.server.constraints import ConstraintSpec, blame
from lightllm_struct.server.logprobs import TokenTexts
from lightllm_struct.server.metrics import RequestTracker, ServerMetrics
from lightllm_struct.server.protocol import _SamplingRequest


# No tokenizer in use has a token over this many characters, so a text longer than max_model_len times it is
# too long for the context whatever it tokenizes to: refused before the tokenizer spends time on it.
_MAX_CHARS_PER_TOKEN = 256


async def encode_off_loop(state: ServerState, text: str, *, param: str, **kwargs: Any) -> list[int]:
    """``state.tokenizer.encode(text)`` in a worker thread, after a length check that needs no tokenizer.

    Raises
    ------
    PromptTooLongError
        The text cannot fit the context whatever its tokens.
    """
    if len(text) > state.max_model_len * _MAX_CHARS_PER_TOKEN:
        raise PromptTooLongError(f"the prompt has {len(text)} characters, more than a context of "
                                 f"{state.max_model_len} tokens can hold", param=param)
    return await asyncio.to_thread(state.tokenizer.encode, text, **kwargs)


class ClientDisconnected(LightLLMStructError):
    """The client went away before its answer was ready; the request was aborted."""

    http_status = 499
    error_type = "client_closed_request"


@dataclass
class ServerState:
    engine: AsyncEngine
    tokenizer: Any
    model_name: str
    max_model_len: int
    metrics: ServerMetrics
    turns: Any = None  # TurnSupport: tool-call format, reasoning, tracking grammars (see turns.py)

    @functools.cached_property
    def token_texts(self) -> TokenTexts:
        return TokenTexts(self.tokenizer)


def sampling_params(req: _SamplingRequest, *, max_tokens: int | None, prompt_len: int, max_model_len: int,
                    prompt_param: str, logprobs: int | None = None,
                    prompt_logprobs: int | None = None) -> SamplingParams:
    """SamplingParams of ``req``; with no max_tokens given, the rest of the context is the limit.

    Raises
    ------
    PromptTooLongError
        The prompt plus ``max_tokens`` does not fit the context.
    """
    room = max_model_len - prompt_len
    if room < 1:
        raise PromptTooLongError(f"the prompt has {prompt_len} tokens; this model's context is "
                                 f"{max_model_len} tokens", param=prompt_param)
    if max_tokens is not None and max_tokens > room:
        raise PromptTooLongError(f"the prompt has {prompt_len} tokens and max_tokens is {max_tokens}; "
                                 f"together they exceed the context of {max_model_len} tokens",
                                 param="max_tokens")
    return SamplingParams(
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        top_k=req.top_k or 0,
        seed=req.seed,
        max_tokens=max_tokens if max_tokens is not None else room,
        stop=req.stop_list(),
        stop_token_ids=tuple(req.stop_token_ids or ()),
        ignore_eos=req.ignore_eos,
        min_tokens=req.min_tokens,
        min_p=req.min_p or 0.0,
        presence_penalty=req.presence_penalty or 0.0,
        frequency_penalty=req.frequency_penalty or 0.0,
        repetition_penalty=1.0 if req.repetition_penalty is None else req.repetition_penalty,
        logit_bias=req.logit_bias_ids(),
        logprobs=logprobs,
        prompt_logprobs=prompt_logprobs,
        logprobs_mode=req.logprobs_mode,
    )


def make_request(prompt_ids: list[int], sampling: SamplingParams, *, prompt: str | None,
                 constraint: ConstraintSpec | None, vocab_size: int) -> Request:
    if not prompt_ids:
        raise InvalidRequestError("the prompt is empty", param="prompt")
    bad = [t for t in prompt_ids if not 0 <= t < vocab_size]
    if bad:
        raise InvalidRequestError(f"prompt token ids out of range [0, {vocab_size}): {bad[:5]}", param="prompt")
    bad = [t for t in sampling.logit_bias if t >= vocab_size]
    if bad:
        raise InvalidRequestError(f"logit_bias token ids out of range [0, {vocab_size}): {bad[:5]}",
                                  param="logit_bias")
    return Request(prompt_token_ids=prompt_ids, sampling=sampling, prompt=prompt,
                   constraint=constraint.constraint if constraint is not None else None)


@dataclass
class Running:
    """A submitted request whose first output has arrived."""

    first: RequestOutput
    rest: AsyncIterator[RequestOutput]
    tracker: RequestTracker

    async def outputs(self) -> AsyncIterator[RequestOutput]:
        yield self.first
        async for out in self.rest:
            self.tracker.on_output(out)
            yield out


async def start(state: ServerState, request: Request, spec: ConstraintSpec | None) -> Running:
    """Submit ``request`` and wait for its first output (errors before it are raised here, typed)."""
    tracker = state.metrics.track()
    outputs = state.engine.generate(request)
    try:
        first = await outputs.__anext__()
    except LightLLMStructError as exc:
        await outputs.aclose()
        raise blame(exc, spec) from None
    except BaseException:
        await outputs.aclose()
        raise
    tracker.on_output(first)
    return Running(first, outputs, tracker)


async def finish(running: Running, http: HTTPRequest) -> RequestOutput:
    """The final output; a client that disconnects meanwhile aborts the request."""

    async def last() -> RequestOutput:
        out = running.first
        async for out in running.outputs():
            pass
        return out

    task = asyncio.ensure_future(last())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.25)
            if done:
                return task.result()
            if await http.is_disconnected():
                raise ClientDisconnected("the client disconnected")
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await running.rest.aclose()

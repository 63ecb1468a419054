"""``POST /v1/completions``: a raw prompt (text or token ids), optionally constrained, full or streamed."""
from __future__ import annotations

import time
from collections.abc import AsyncIterator

from fastapi import Request as HTTPRequest
from fastapi.responses import JSONResponse, Response

from lightllm_struct.server.chat import usage_of
from lightllm_struct.server.constraints import constraint_of
from lightllm_struct.server.protocol import Completion, CompletionChoice, CompletionRequest, new_id
from lightllm_struct.server.serving import (Running, ServerState, encode_off_loop, finish, make_request,
                                            sampling_params, start)
from lightllm_struct.server.streaming import sse_event, sse_response


async def _prompt(state: ServerState, req: CompletionRequest) -> tuple[str | None, list[int]]:
    prompt = req.prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], int):
        return None, list(prompt)
    text = prompt[0] if isinstance(prompt, list) else prompt
    return text, await encode_off_loop(state, text, param="prompt")


async def create_completion(state: ServerState, body: object, http: HTTPRequest) -> Response:
    req = CompletionRequest.model_validate(body)
    prompt, prompt_ids = await _prompt(state, req)
    sampling = sampling_params(req, max_tokens=req.max_tokens, prompt_len=len(prompt_ids),
                               max_model_len=state.max_model_len, prompt_param="prompt")
    spec = constraint_of(req)
    request = make_request(prompt_ids, sampling, prompt=prompt, constraint=spec,
                           vocab_size=state.tokenizer.vocab_size)
    running = await start(state, request, spec)
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return sse_response(_chunks(state, running, include_usage=include_usage))
    out = await finish(running, http)
    completion = Completion(model=state.model_name, usage=usage_of(out),
                            choices=[CompletionChoice(text=out.text, finish_reason=out.finish_reason)])
    return JSONResponse(completion.model_dump())


async def _chunks(state: ServerState, running: Running, *, include_usage: bool) -> AsyncIterator[str]:
    cid, created = new_id("cmpl"), int(time.time())

    def chunk(text: str, reason: str | None) -> str:
        return sse_event(Completion(id=cid, created=created, model=state.model_name,
                                    choices=[CompletionChoice(text=text, finish_reason=reason)]))

    sent = 0
    out = running.first
    try:
        async for out in running.outputs():
            text = out.text[sent:]
            sent = len(out.text)
            if text or out.finished:
                yield chunk(text, out.finish_reason if out.finished else None)
    finally:
        await running.rest.aclose()
    if include_usage:
        yield sse_event(Completion(id=cid, created=created, model=state.model_name, choices=[],
                                   usage=usage_of(out)))

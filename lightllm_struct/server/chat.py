"""``POST /v1/chat/completions``: chat template, tools, constraint, then a full answer or an SSE stream."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from fastapi import Request as HTTPRequest
from fastapi.responses import JSONResponse, Response

from lightllm_struct.request import RequestOutput
from lightllm_struct.server.constraints import chat_constraint
from lightllm_struct.server.protocol import (AssistantMessage, ChatChoice, ChatChunkChoice, ChatCompletion,
                                             ChatCompletionChunk, ChatCompletionRequest, ChatDelta,
                                             FunctionCall, FunctionCallDelta, ToolCall, ToolCallDelta, Usage,
                                             new_id)
from lightllm_struct.server.serving import (Running, ServerState, encode_off_loop, finish, make_request,
                                            sampling_params, start)
from lightllm_struct.server.streaming import sse_event, sse_response
from lightllm_struct.server.turn_parser import Delta, TurnParser


def usage_of(out: RequestOutput) -> Usage:
    return Usage(prompt_tokens=out.num_prompt_tokens, completion_tokens=out.num_output_tokens,
                 total_tokens=out.num_prompt_tokens + out.num_output_tokens)


def finish_reason(out: RequestOutput, has_calls: bool) -> str | None:
    if out.finish_reason == "stop" and has_calls:
        return "tool_calls"
    return out.finish_reason


async def create_chat_completion(state: ServerState, body: object, http: HTTPRequest) -> Response:
    req = ChatCompletionRequest.model_validate(body)
    prompt = await asyncio.to_thread(state.turns.chat.render, req)
    prompt_ids = await encode_off_loop(state, prompt, param="messages", add_special_tokens=False)
    max_tokens = req.max_completion_tokens or req.max_tokens
    sampling = sampling_params(req, max_tokens=max_tokens, prompt_len=len(prompt_ids),
                               max_model_len=state.max_model_len, prompt_param="messages")
    # tool schemas convert to Lark: not on the event loop
    spec, turn = await asyncio.to_thread(chat_constraint, req, state.turns.chat, prompt)
    request = make_request(prompt_ids, sampling, prompt=prompt, constraint=spec,
                           vocab_size=state.tokenizer.vocab_size)
    running = await start(state, request, spec)
    parser = await state.turns.parser(turn) if turn is not None else None
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return sse_response(_chunks(state, running, parser, include_usage=include_usage))
    out = await finish(running, http)
    if parser is None:
        message = AssistantMessage(content=out.text)
    else:
        parser.feed(out.token_ids, final=True)
        calls = [ToolCall(id=c.id, function=FunctionCall(name=c.name, arguments=c.arguments))
                 for c in parser.calls]
        message = AssistantMessage(content=parser.content or None, reasoning_content=parser.reasoning or None,
                                   tool_calls=calls or None)
    reason = finish_reason(out, bool(message.tool_calls))
    completion = ChatCompletion(model=state.model_name, usage=usage_of(out),
                                choices=[ChatChoice(message=message, finish_reason=reason)])
    return JSONResponse(completion.model_dump())


def _delta_model(delta: Delta) -> ChatDelta:
    calls = [ToolCallDelta(index=p.index, id=p.id, type="function" if p.id else None,
                           function=FunctionCallDelta(name=p.name, arguments=p.arguments))
             for p in delta.calls]
    return ChatDelta(content=delta.content or None, reasoning_content=delta.reasoning or None,
                     tool_calls=calls or None)


async def _chunks(state: ServerState, running: Running, parser: TurnParser | None, *,
                  include_usage: bool) -> AsyncIterator[str]:
    chunk_id, created = new_id("chatcmpl"), int(time.time())

    def chunk(delta: ChatDelta, reason: str | None = None) -> str:
        return sse_event(ChatCompletionChunk(id=chunk_id, created=created, model=state.model_name,
                                             choices=[ChatChunkChoice(delta=delta, finish_reason=reason)]))

    yield chunk(ChatDelta(role="assistant", content=""))
    out, sent = running.first, 0
    try:
        async for out in running.outputs():
            if parser is None:
                delta, sent = Delta(content=out.text[sent:]), len(out.text)
            else:
                delta = parser.feed(out.token_ids, final=out.finished)
            if delta:
                yield chunk(_delta_model(delta))
    finally:  # also on disconnect: closing the engine stream aborts the request and frees its KV slots
        await running.rest.aclose()
    yield chunk(ChatDelta(), finish_reason(out, bool(parser and parser.calls)))
    if include_usage:
        yield sse_event(ChatCompletionChunk(id=chunk_id, created=created, model=state.model_name, choices=[],
                                            usage=usage_of(out)))

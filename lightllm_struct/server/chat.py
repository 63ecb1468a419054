"""``POST /v1/chat/completions``: chat template, tools, constraint, then a full answer or an SSE stream,
with ``n`` choices (each parsed on its own) and log-probabilities when asked."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from fastapi import Request as HTTPRequest
from fastapi.responses import JSONResponse, Response

from lightllm_struct.request import RequestOutput
from lightllm_struct.server.choices import finish_choices, merged_outputs, start_choices, with_choices
from lightllm_struct.server.constraints import chat_constraint
from lightllm_struct.server.logprobs import chat_logprobs
from lightllm_struct.server.protocol import (AssistantMessage, ChatChoice, ChatChunkChoice, ChatCompletion,
                                             ChatCompletionChunk, ChatCompletionRequest, ChatDelta,
                                             FunctionCall, FunctionCallDelta, StructReport, ToolCall,
                                             ToolCallDelta, Usage, new_id)
from lightllm_struct.server.serving import Running, ServerState, encode_off_loop, make_request, sampling_params
from lightllm_struct.server.streaming import sse_event, sse_response
from lightllm_struct.server.turn_parser import Delta, TurnParser


def usage_of(outs: RequestOutput | list[RequestOutput], *, num_prompts: int = 1) -> Usage:
    """Usage of one output or of all choices (each prompt counted once, as OpenAI does for ``n``)."""
    outs = outs if isinstance(outs, list) else [outs]
    per_prompt = max(1, len(outs) // num_prompts)
    prompt = sum(o.num_prompt_tokens for o in outs[::per_prompt])
    completion = sum(o.num_output_tokens for o in outs)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


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
                               max_model_len=state.max_model_len, prompt_param="messages",
                               logprobs=req.num_logprobs())
    # tool schemas convert to Lark in the server's compile workers: never in this interpreter
    spec, turn = await chat_constraint(req, state.turns, prompt)
    request = make_request(prompt_ids, sampling, prompt=prompt, constraint=spec,
                           vocab_size=state.tokenizer.vocab_size)
    runnings = await start_choices(state, with_choices([request], req.n), spec)
    parsers = [await state.turns.parser(turn) if turn is not None else None for _ in runnings]
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return sse_response(_chunks(state, runnings, parsers, include_usage=include_usage))
    outs = await finish_choices(runnings, http)
    choices = [_choice(state, i, out, parser) for i, (out, parser) in enumerate(zip(outs, parsers))]
    completion = ChatCompletion(model=state.model_name, usage=usage_of(outs), choices=choices,
                                lightllm_struct=StructReport.of(outs))
    return JSONResponse(completion.body())


def _choice(state: ServerState, index: int, out: RequestOutput, parser: TurnParser | None) -> ChatChoice:
    if parser is None:
        message = AssistantMessage(content=out.text)
    else:
        parser.feed(out.token_ids, final=True)
        calls = [ToolCall(id=c.id, function=FunctionCall(name=c.name, arguments=c.arguments))
                 for c in parser.calls]
        message = AssistantMessage(content=parser.content or None, reasoning_content=parser.reasoning or None,
                                   tool_calls=calls or None)
    logprobs = None if out.logprobs is None else chat_logprobs(state.token_texts, out.logprobs)
    return ChatChoice(index=index, message=message, finish_reason=finish_reason(out, bool(message.tool_calls)),
                      logprobs=logprobs)


def _delta_model(delta: Delta) -> ChatDelta:
    calls = [ToolCallDelta(index=p.index, id=p.id, type="function" if p.id else None,
                           function=FunctionCallDelta(name=p.name, arguments=p.arguments))
             for p in delta.calls]
    return ChatDelta(content=delta.content or None, reasoning_content=delta.reasoning or None,
                     tool_calls=calls or None)


async def _chunks(state: ServerState, runnings: list[Running], parsers: list[TurnParser | None], *,
                  include_usage: bool) -> AsyncIterator[str]:
    chunk_id, created = new_id("chatcmpl"), int(time.time())

    def chunk(index: int, delta: ChatDelta, reason: str | None = None, entries=None) -> str:
        logprobs = None if entries is None else chat_logprobs(state.token_texts, entries)
        return sse_event(ChatCompletionChunk(id=chunk_id, created=created, model=state.model_name, choices=[
            ChatChunkChoice(index=index, delta=delta, finish_reason=reason, logprobs=logprobs)]))

    sent_text, sent_lp = [0] * len(runnings), [0] * len(runnings)  # per choice: text and logprobs sent
    finals: list[RequestOutput] = [r.first for r in runnings]
    for i in range(len(runnings)):
        yield chunk(i, ChatDelta(role="assistant", content=""))
    async for i, out in merged_outputs(runnings):
        finals[i] = out
        parser = parsers[i]
        if parser is None:
            delta, sent_text[i] = Delta(content=out.text[sent_text[i]:]), len(out.text)
        else:
            delta = parser.feed(out.token_ids, final=out.finished)
        entries = None if out.logprobs is None else out.logprobs[sent_lp[i]:]
        if delta or (out.finished and entries):
            sent_lp[i] += len(entries or ())
            yield chunk(i, _delta_model(delta) if delta else ChatDelta(), entries=entries)
        if out.finished:
            yield chunk(i, ChatDelta(), finish_reason(out, bool(parser and parser.calls)))
    if include_usage:
        yield sse_event(ChatCompletionChunk(id=chunk_id, created=created, model=state.model_name, choices=[],
                                            usage=usage_of(finals)))

"""``POST /v1/completions``: raw prompts (text or token ids, one or a list), optionally constrained and
echoed, with ``n`` choices each, full or streamed. Choice ``i * n + j`` is choice ``j`` of prompt ``i``."""
from __future__ import annotations

import time
from collections.abc import AsyncIterator

from fastapi import Request as HTTPRequest
from fastapi.responses import JSONResponse, Response

from lightllm_struct.request import Request, RequestOutput
from lightllm_struct.server.chat import usage_of
from lightllm_struct.server.choices import finish_choices, merged_outputs, start_choices, with_choices
from lightllm_struct.server.constraints import request_constraint
from lightllm_struct.server.logprobs import completion_logprobs
from lightllm_struct.server.protocol import (Completion, CompletionChoice, CompletionLogprobs, CompletionRequest,
                                             StructReport, new_id)
from lightllm_struct.server.serving import Running, ServerState, encode_off_loop, make_request, sampling_params
from lightllm_struct.server.streaming import sse_event, sse_response


async def _requests(state: ServerState, req: CompletionRequest, spec) -> list[Request]:
    requests = []
    for prompt in req.prompts():
        text, ids = (None, list(prompt)) if isinstance(prompt, list) else \
            (prompt, await encode_off_loop(state, prompt, param="prompt"))
        # Echo with logprobs scores the prompt too: the first token has none (nothing comes before it).
        sampling = sampling_params(req, max_tokens=req.max_tokens, prompt_len=len(ids),
                                   max_model_len=state.max_model_len, prompt_param="prompt", logprobs=req.logprobs,
                                   prompt_logprobs=req.logprobs if req.echo and req.logprobs is not None else None)
        requests.append(make_request(ids, sampling, prompt=text, constraint=spec,
                                     vocab_size=state.tokenizer.vocab_size))
    return requests


def _prompt_text(state: ServerState, out: RequestOutput) -> str:
    return out.prompt if out.prompt is not None else state.tokenizer.decode(out.prompt_token_ids)


def _logprobs(state: ServerState, out: RequestOutput, *, echo: bool, entries, offset: int = 0
              ) -> CompletionLogprobs | None:
    if out.logprobs is None:
        return None
    texts = state.token_texts
    if echo:
        prompt = completion_logprobs(texts, out.prompt_logprobs or [None] * out.num_prompt_tokens,
                                     prompt_ids=out.prompt_token_ids)
        offset = sum(len(t) for t in prompt.tokens)
        rest = completion_logprobs(texts, entries, offset=offset)
        return CompletionLogprobs(**{k: getattr(prompt, k) + getattr(rest, k) for k in CompletionLogprobs.model_fields})
    return completion_logprobs(texts, entries, offset=offset)


async def create_completion(state: ServerState, body: object, http: HTTPRequest) -> Response:
    req = CompletionRequest.model_validate(body)
    spec = await request_constraint(req, state.turns.compiles)  # a structural tag converts in a worker
    requests = await _requests(state, req, spec)
    runnings = await start_choices(state, with_choices(requests, req.n), spec)
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return sse_response(_chunks(state, runnings, req, include_usage=include_usage, num_prompts=len(requests)))
    outs = await finish_choices(runnings, http)
    choices = [CompletionChoice(index=i, text=(_prompt_text(state, out) if req.echo else "") + out.text,
                                finish_reason=out.finish_reason,
                                logprobs=_logprobs(state, out, echo=req.echo, entries=out.logprobs or []))
               for i, out in enumerate(outs)]
    completion = Completion(model=state.model_name, usage=usage_of(outs, num_prompts=len(requests)), choices=choices,
                            lightllm_struct=StructReport.of(outs))
    return JSONResponse(completion.body())


async def _chunks(state: ServerState, runnings: list[Running], req: CompletionRequest, *, include_usage: bool,
                  num_prompts: int) -> AsyncIterator[str]:
    cid, created = new_id("cmpl"), int(time.time())

    def chunk(index: int, text: str, reason: str | None, logprobs: CompletionLogprobs | None) -> str:
        return sse_event(Completion(id=cid, created=created, model=state.model_name, choices=[
            CompletionChoice(index=index, text=text, finish_reason=reason, logprobs=logprobs)]))

    sent_text, sent_lp = [0] * len(runnings), [0] * len(runnings)
    echoed = [not req.echo] * len(runnings)
    finals = [r.first for r in runnings]
    async for i, out in merged_outputs(runnings):
        finals[i] = out
        text = out.text[sent_text[i]:]
        entries = (out.logprobs or [])[sent_lp[i]:]
        echo, echoed[i] = not echoed[i], True
        if echo:
            text = _prompt_text(state, out) + text
        if text or entries or out.finished or echo:
            logprobs = _logprobs(state, out, echo=echo, entries=entries, offset=sent_text[i])
            sent_text[i], sent_lp[i] = len(out.text), len(out.logprobs or [])
            yield chunk(i, text, out.finish_reason if out.finished else None, logprobs)
    if include_usage:
        yield sse_event(Completion(id=cid, created=created, model=state.model_name, choices=[],
                                   usage=usage_of(finals, num_prompts=num_prompts)))

"""After a token is sampled: detokenize, decide whether the request stops, and build its output.

Stop strings are never shown half-way: while a suffix of the text could still grow into a stop string, that
suffix is held back from streamed outputs; the final output has the stop string cut off (or kept, with
``include_stop_str_in_output``).
"""
from __future__ import annotations

import time

from lightllm_struct.engine.sequence import Sequence
from lightllm_struct.request import RequestOutput, RequestStatus


def append_token(seq: Sequence, token_id: int, *, eos_token_ids: frozenset[int], max_model_len: int) -> None:
    """Record ``token_id`` for ``seq`` and finish it if a stop condition holds (first one wins)."""
    req, params = seq.req, seq.req.sampling
    req.output_token_ids.append(token_id)
    if req.first_token_time is None:
        req.first_token_time = time.monotonic()
    if token_id in params.stop_token_ids:
        seq.stop_reason = token_id
        seq.finish(RequestStatus.FINISHED_STOPPED)
        return
    if token_id in eos_token_ids and not params.ignore_eos:
        seq.finish(RequestStatus.FINISHED_STOPPED)
        return
    req.output_text += seq.detokenizer.step(token_id)
    if params.stop and _cut_at_stop_string(seq):
        seq.finish(RequestStatus.FINISHED_STOPPED)
    elif seq.matcher is not None and seq.matcher.is_terminated():
        seq.finish(RequestStatus.FINISHED_STOPPED)
    elif seq.num_output >= params.max_tokens or seq.num_tokens >= max_model_len:
        # Budget-aware masks bring a constrained answer to a whole sentence by its last token: it stopped.
        complete = seq.matcher is not None and seq.matcher.is_complete()
        seq.finish(RequestStatus.FINISHED_STOPPED if complete else RequestStatus.FINISHED_LENGTH)


def _cut_at_stop_string(seq: Sequence) -> bool:
    """If the text now contains a stop string, cut the text there and say so."""
    req, params = seq.req, seq.req.sampling
    longest = max(len(s) for s in params.stop)
    # Only the new characters (and a stop string's length before them) can complete a match.
    start = max(0, seq.num_emitted_chars - longest)
    hits = [(req.output_text.find(s, start), s) for s in params.stop]
    hits = [(i, s) for i, s in hits if i >= 0]
    if not hits:
        seq.num_emitted_chars = len(req.output_text) - _held_back(req.output_text, params.stop)
        return False
    index, stop = min(hits)
    end = index + len(stop) if params.include_stop_str_in_output else index
    req.output_text = req.output_text[:end]
    seq.stop_reason = stop
    return True


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of some stop string."""
    best = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:k]):
                best = k
                break
    return best


def make_output(seq: Sequence) -> RequestOutput:
    """A snapshot of ``seq`` for the caller; unfinished text stops before any possible stop-string start."""
    req = seq.req
    text = req.output_text
    if not seq.finished and req.sampling.stop:
        text = text[:seq.num_emitted_chars]
    return RequestOutput(
        request_id=req.request_id,
        prompt=req.prompt,
        prompt_token_ids=req.prompt_token_ids,
        text=text,
        token_ids=list(req.output_token_ids),
        finished=seq.finished,
        finish_reason=req.status.finish_reason,
        num_prompt_tokens=len(req.prompt_token_ids),
        num_output_tokens=len(req.output_token_ids),
        num_cached_tokens=req.num_cached_tokens,
        error=None if req.error is None else str(req.error),
        stop_reason=seq.stop_reason,
        exception=req.error,
        logprobs=None if req.output_logprobs is None else req.output_logprobs[:len(req.output_token_ids)],
        prompt_logprobs=None if req.prompt_logprobs is None else list(req.prompt_logprobs),
        unsupported=getattr(getattr(seq.matcher, "grammar", None), "unsupported", ()),
    )

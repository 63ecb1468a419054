"""Start-up warm-up: run what the first requests would otherwise pay for before the server says ready.

CUDA graphs are captured when the engine is built; this compiles the rest: the Triton prefill and sampling
kernels (masked and unmasked variants, a long prompt's block size), and the grammar machinery (the grammar
manager's own warm-up where it has one, and one constrained request end to end).
"""
from __future__ import annotations

import logging
import time

from lightllm_struct.request import Constraint, Request, SamplingParams

logger = logging.getLogger(__name__)

_LONG_PROMPT = 2048  # the prefill kernel switches to larger blocks from here on (attention_prefill.py)


def warm_up(engine, *, timeout_s: float = 120.0) -> float:
    """Run warm-up requests through ``engine`` (idle, before serving); returns the seconds it took."""
    start = time.perf_counter()
    grammar_warm_up = getattr(engine.grammar, "warm_up", None)
    pending = grammar_warm_up() if grammar_warm_up is not None else None
    token = 1 % engine.model_config.vocab_size
    long = engine.device.type == "cuda" and engine.max_model_len > _LONG_PROMPT + 2
    requests = [Request(prompt_token_ids=[token] * 4, request_id="warmup-free",  # the penalties kernel too
                        sampling=SamplingParams(max_tokens=2, ignore_eos=True, presence_penalty=0.5)),
                Request(prompt_token_ids=[token] * 4, sampling=SamplingParams(max_tokens=3, temperature=0.7, seed=0),
                        constraint=Constraint("json_object"), request_id="warmup-constrained")]
    if long:
        requests.append(Request(prompt_token_ids=[token] * (_LONG_PROMPT + 1), request_id="warmup-long",
                                sampling=SamplingParams(max_tokens=1, ignore_eos=True)))
    for req in requests:
        try:
            engine.add_request(req)
        except Exception:  # noqa: BLE001 -- warm-up is best effort
            logger.warning("warm-up request %s refused", req.request_id, exc_info=True)
    deadline = time.monotonic() + timeout_s
    while engine.has_unfinished() and time.monotonic() < deadline:
        engine.step()
    for req in requests:
        engine.abort_request(req.request_id)  # past the deadline: free its slots; a no-op once finished
    while engine.has_unfinished():
        engine.step()
    if pending is not None:
        try:
            pending.result(timeout=max(0.0, deadline - time.monotonic()))
        except Exception:  # noqa: BLE001 -- a failed warm-up costs the first request time, nothing more
            logger.warning("grammar warm-up did not finish", exc_info=True)
    engine.flush_prefix_cache()
    seconds = time.perf_counter() - start
    logger.info("warm-up took %.1f s", seconds)
    return seconds

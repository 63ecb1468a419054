"""Start-up warm-up: run what the first requests would otherwise pay for before the server says ready.

CUDA graphs are captured when the engine is built; this compiles the rest: the Triton prefill and sampling
kernels (masked and unmasked variants, a long prompt's block size), and the grammar machinery (the grammar
manager's own warm-up where it has one, and one constrained request end to end).

The sampling kernel runs outside the graphs on the step's real row count, and its launch changes with that
count (the split of a row over programs, a compile-time constant, and Triton's specialisation of its integer
arguments), as the penalties kernel's does with its entry and row counts: every row count the engine can
sample is run once here, so that no batch size met under load compiles a variant (seconds, during which the
whole batch waits: the TTFT outliers of issue 19).
"""
from __future__ import annotations

import logging
import time

import torch

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
    if engine.device.type == "cuda":
        warm_sampler(engine)
    seconds = time.perf_counter() - start
    logger.info("warm-up took %.1f s", seconds)
    return seconds


def warm_sampler(engine, *, penalty_counts: tuple[int, ...] = (1, 2, 16)) -> int:
    """Run ``engine.sampler`` at every row count 1..max_num_seqs, with and without a grammar mask, and the
    penalties at entry x row counts of each of Triton's integer classes (1, a multiple of 16, other);
    returns the launches made. Outputs are discarded."""
    from lightllm_struct.engine.sampler import SamplingTensors
    from lightllm_struct.kernels.reference import SparsePenalties

    device, vocab, rows = engine.device, engine.model_config.vocab_size, engine.config.max_num_seqs
    logits = torch.zeros(rows, vocab, dtype=torch.float32, device=device)
    mask = torch.full((rows, (vocab + 31) // 32), -1, dtype=torch.int32, device=device)
    launches = 0

    def params(b: int, penalties=None) -> SamplingTensors:
        return SamplingTensors.from_lists(temperature=[0.7] * b, top_p=[1.0] * b, top_k=[0] * b, seed=[0] * b,
                                          step=[0] * b, penalties=penalties, device=device)

    for b in range(1, rows + 1):
        for bitmask in (None, mask[:b]):
            engine.sampler(logits[:b], params(b), bitmask)
            launches += 1
    for b in (n for n in penalty_counts if n <= rows):
        for per_row in penalty_counts:
            entries = [{t: (1.0, 1.0, 0.0) for t in range(per_row)}] + [{}] * (b - 1)  # n = per_row entries
            pen = SparsePenalties.from_rows(entries, [(1.1, 0.1, 0.1)] * b, device=device)
            engine.sampler(logits[:b], params(b, pen), None)
            launches += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return launches

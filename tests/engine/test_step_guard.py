"""A failure or an overrun attributable to one request fails that request alone; the batch goes on."""
from __future__ import annotations

import re
import time

import pytest

from lightllm_struct.request import Constraint
from lightllm_struct.engine.step_guard import EngineRequestError
from lightllm_struct.grammar.errors import GrammarTooComplex
from lightllm_struct.request import Request, RequestStatus, SamplingParams
from tests.engine.conftest import assert_kv_pool_full

N_FREE = 8


def _free(tok) -> Request:
    return Request(prompt_token_ids=tok.encode("Count: 1, 2,"),
                   sampling=SamplingParams(temperature=0, max_tokens=N_FREE, ignore_eos=True))


def _run(engine) -> dict:
    finals = {}
    while engine.has_unfinished():
        finals.update({o.request_id: o for o in engine.step() if o.finished})
    return finals


def _constrained(engine, tok, constraint: Constraint) -> Request:
    req = Request(prompt_token_ids=tok.encode("Answer:"), sampling=SamplingParams(max_tokens=20),
                  constraint=constraint)
    engine.add_request(req)
    deadline = time.monotonic() + 60
    while engine.grammar.num_pending and time.monotonic() < deadline:  # compiles run off the step loop
        engine.grammar.wait(0.05)
        engine._admit_compiled()
    if engine._seqs[req.request_id].matcher is None:
        pytest.fail("the grammar never compiled")
    return req


def test_a_failing_mask_fails_its_request_only(llm):
    engine, tok = llm.engine, llm.tokenizer
    good = _free(tok)
    engine.add_request(good)
    bad = _constrained(engine, tok, Constraint("choice", ["yes", "no"]))

    def broken(*_args, **_kwargs):
        raise RuntimeError("injected mask failure")

    matcher = engine._seqs[bad.request_id].matcher
    matcher.fill_next_token_bitmask = matcher.next_token_words = broken  # the batch fill reads the latter
    finals = _run(engine)
    assert bad.status == RequestStatus.FINISHED_ERROR and isinstance(bad.error, EngineRequestError)
    assert "RuntimeError" not in bad.error.message and "injected" not in bad.error.message
    assert finals[good.request_id].num_output_tokens == N_FREE
    assert_kv_pool_full(engine)


def test_a_sampling_row_that_cannot_be_built_fails_its_request_only(llm):
    engine, tok = llm.engine, llm.tokenizer
    good, bad = _free(tok), _free(tok)
    engine.add_request(good)
    engine.add_request(bad)
    engine._seqs[bad.request_id].seed = 2 ** 70  # past the edge's check: the int64 tensor cannot hold it
    finals = _run(engine)
    assert bad.status == RequestStatus.FINISHED_ERROR and isinstance(bad.error, EngineRequestError)
    assert finals[good.request_id].num_output_tokens == N_FREE
    assert finals[good.request_id].token_ids == llm.generate("Count: 1, 2,", good.sampling)[0].token_ids
    assert_kv_pool_full(engine)


def test_a_mask_over_its_budget_fails_its_request_while_a_free_one_finishes(llm, monkeypatch):
    engine, tok = llm.engine, llm.tokenizer
    monkeypatch.setattr(engine.grammar, "mask_budget_s", 0.05)
    good = _free(tok)
    engine.add_request(good)
    slow = _constrained(engine, tok, Constraint("choice", ["yes", "no"]))
    matcher = engine._seqs[slow.request_id].matcher
    fill, calls = matcher.next_token_words, []  # what the batch fill reads (grammar/batch_fill.py)

    def slow_fill(*args, **kwargs):
        calls.append(1)
        time.sleep(0.1)
        return fill(*args, **kwargs)

    matcher.next_token_words = slow_fill
    finals = _run(engine)
    assert isinstance(slow.error, GrammarTooComplex) and "grammar_mask_budget_s" in slow.error.message
    assert finals[good.request_id].num_output_tokens == N_FREE
    assert len(calls) == 1  # the slow mask was paid once, not at every token
    assert_kv_pool_full(engine)


def test_the_nested_counted_repeat_regex_cannot_stall_a_free_neighbour(llm, monkeypatch):
    """Issue 11's ``(x{0,300}){0,300}``: its masks cost seconds a token; the free request must not wait on it."""
    engine, tok = llm.engine, llm.tokenizer
    monkeypatch.setattr(engine.grammar, "mask_budget_s", 0.25)
    good = _free(tok)
    engine.add_request(good)
    pattern = "(x{0,300}){0,300}"
    hostile = Request(prompt_token_ids=tok.encode("x"), sampling=SamplingParams(max_tokens=24),
                      constraint=Constraint("regex", pattern))
    engine.add_request(hostile)
    finals, slowest = {}, 0.0
    while engine.has_unfinished():
        start = time.monotonic()
        finals.update({o.request_id: o for o in engine.step() if o.finished})
        slowest = max(slowest, time.monotonic() - start)
    assert finals[good.request_id].num_output_tokens == N_FREE
    # the budget interrupts a mask instead of waiting for it (one of its first masks took 8 s)
    assert slowest < 0.25 + 1.5, f"a step took {slowest:.2f} s"
    out = finals[hostile.request_id]
    # Either it failed cleanly with a typed error (compile limit or mask budget) or its masks were cheap.
    assert hostile.status == RequestStatus.FINISHED_ERROR or re.fullmatch(pattern, out.text)
    assert_kv_pool_full(engine)

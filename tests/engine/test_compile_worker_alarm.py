"""A compile worker's alarm whose exception is swallowed where it lands still ends the job as the deadline.

numba compiling a kernel calls back into Python through ctypes, which only prints an exception raised there;
the fuzz benchmark on a fresh checkout (no numba cache) saw the alarm land there and numba then fail with
"no compiled object yet": an untyped error where the deadline was the cause.
"""
from __future__ import annotations

import time

import pytest

from lightllm_struct.engine.compile_worker import RESTART, WorkerInit, compile_job, unpack_error
from lightllm_struct.grammar.errors import CompileTimeout, GrammarTooComplex

INIT = WorkerInit(vocab=[bytes([b]) for b in range(256)], eos_token_ids=[], special_token_ids=[], mask_budget_s=5.0)


def _swallows_the_alarm() -> None:
    try:
        time.sleep(10)  # the alarm fires in here
    except CompileTimeout:
        pass  # as ctypes does with an exception raised in a callback
    raise RuntimeError("no compiled object yet")


def _fails_typed_after_the_alarm() -> None:
    try:
        time.sleep(10)
    except CompileTimeout:
        pass
    raise GrammarTooComplex("too many states")


def _fails_untyped() -> None:
    raise RuntimeError("a bug")


def test_an_untyped_error_after_the_alarm_is_the_deadline():
    kind, packed, *rest = compile_job(None, None, INIT, ("call", _swallows_the_alarm, (), 0.2))
    assert kind == "error" and rest == [RESTART]
    assert isinstance(unpack_error(packed), CompileTimeout)


def test_a_typed_error_after_the_alarm_stays_what_it_is():
    kind, packed, *rest = compile_job(None, None, INIT, ("call", _fails_typed_after_the_alarm, (), 0.2))
    assert kind == "error" and rest == [RESTART]
    assert type(unpack_error(packed)) is GrammarTooComplex


def test_an_untyped_error_without_an_alarm_is_reported_as_a_failure_not_a_timeout():
    kind, packed = compile_job(None, None, INIT, ("call", _fails_untyped, (), 30))
    error = unpack_error(packed)
    assert kind == "error" and not isinstance(error, CompileTimeout)
    assert "failed" in str(error)


@pytest.fixture(autouse=True)
def _no_alarm_left():
    yield
    import signal
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)

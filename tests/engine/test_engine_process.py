"""Errors crossing the engine-process pipe keep their class and fields; the start-up warm-up leaves the
engine idle with its KV pool whole."""
from __future__ import annotations

import pickle

from lightllm_struct.engine.engine_process import portable_error, rebuild_error
from lightllm_struct.engine.warmup import warm_up
from lightllm_struct.errors import BudgetTooSmallError, EngineDeadError, InvalidRequestError
from tests.engine.conftest import assert_kv_pool_full


def test_typed_errors_cross_the_pipe_with_their_class_and_fields():
    budget = BudgetTooSmallError("max_tokens 3 is below 7", min_tokens=7)
    back = rebuild_error(pickle.loads(pickle.dumps(portable_error(budget))))
    assert type(back) is BudgetTooSmallError and back.min_tokens == 7 and back.param == "max_tokens"
    assert back.message == "max_tokens 3 is below 7" and back.http_status == 400
    bad = rebuild_error(portable_error(InvalidRequestError("no", param="prompt")))
    assert type(bad) is InvalidRequestError and bad.param == "prompt"
    plain = rebuild_error(portable_error(RuntimeError("boom")))  # not ours: a typed stand-in, no traceback
    assert isinstance(plain, EngineDeadError) and "RuntimeError: boom" in plain.message
    forged = rebuild_error(("os", "system", "x", {}))  # only project classes are looked up
    assert type(forged).__name__ == "LightLLMStructError"


def test_warm_up_leaves_the_engine_idle(llm):
    assert warm_up(llm.engine) > 0
    assert_kv_pool_full(llm.engine)

"""Compiles in worker processes: the grammar that comes back is the grammar compiled here, errors come back
typed, and a worker that overruns its deadline, hangs outside Python or dies is killed and replaced."""
from __future__ import annotations

import os
import signal
import time

import pytest
import torch

from lightllm_struct.engine.compile_pool import CompilePool
from lightllm_struct.engine.compile_worker import CompileWorkerDied, WorkerInit
from lightllm_struct.grammar import GrammarCompiler, Matcher, TokenizerInfo
from lightllm_struct.grammar.errors import CompileTimeout, GrammarTooComplex, SchemaError
from lightllm_struct.request import Constraint

VOCAB = [bytes([b]) for b in range(256)] + [b'{"', b'":', b"true", b"false", b"null", b"abc", b"<eos>"]
EOS = [len(VOCAB) - 1]
PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8}, "ok": {"type": "boolean"}},
          "required": ["name", "ok"], "additionalProperties": False}


def hang_ignoring_alarms() -> None:
    """Stands for a compile stuck where the worker's own alarm cannot reach it."""
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    time.sleep(120)


_HOG: list = []


def hog(mb: int) -> None:
    """Stands for a compile that leaves memory behind in the worker (process-wide caches, a kept heap)."""
    _HOG.append(b"x" * (mb << 20))


@pytest.fixture(scope="module")
def local():
    return GrammarCompiler(TokenizerInfo.from_vocab(VOCAB, eos_token_ids=EOS))


@pytest.fixture(scope="module")
def pool(local):
    init = WorkerInit(vocab=VOCAB, eos_token_ids=EOS, special_token_ids=[], mask_budget_s=5.0)
    pool = CompilePool(lambda: init, lambda: local.tokenizer, workers=1)
    yield pool
    pool.shutdown()


def _mask(grammar, prefix: bytes) -> torch.Tensor:
    m = Matcher(grammar)
    assert m.accept_bytes(prefix)
    mask = torch.zeros(1, (len(VOCAB) + 31) // 32, dtype=torch.int32)
    m.fill_next_token_bitmask(mask, index=0)
    return mask


@pytest.mark.parametrize("constraint, prefix", [
    (Constraint("json_schema", PERSON), b'{"name":"a'), (Constraint("regex", r"[a-c]{2,5}x?"), b"ab"),
    (Constraint("lark", 'start: "a" b+\nb: "b" | "c"'), b"ab"), (Constraint("choice", ["yes", "no"]), b"y")])
def test_a_worker_grammar_masks_like_a_local_one(pool, local, constraint, prefix):
    from lightllm_struct.engine.grammar_manager import compile_constraint

    remote = pool.compile(constraint, timeout_s=60).result(timeout=400)
    assert remote.tokenizer is local.tokenizer  # the vocabulary is referenced, never sent back
    assert torch.equal(_mask(remote, prefix), _mask(compile_constraint(local, constraint), prefix))


def test_errors_come_back_typed_with_their_pointer(pool):
    bad = {"type": "object", "properties": {"a": {"type": "strin"}}}
    with pytest.raises(SchemaError) as err:
        pool.compile(Constraint("json_schema", bad), timeout_s=60).result(timeout=400)
    assert err.value.pointer.startswith("/properties/a") and err.value.message.count("(at ") == 1


def test_a_deadline_overrun_is_a_typed_timeout_and_the_pool_goes_on(pool):
    with pytest.raises(CompileTimeout):
        pool.call(time.sleep, 30, timeout_s=0.5).result(timeout=60)  # the worker's alarm answers
    start = time.monotonic()
    with pytest.raises(CompileTimeout):
        pool.call(hang_ignoring_alarms, timeout_s=0.5).result(timeout=400)  # the pool kills it
    assert time.monotonic() - start < 10
    assert pool.stats["grammar_compile_worker_restarts_total"] >= 1
    assert pool.compile(Constraint("choice", ["a"]), timeout_s=60).result(timeout=400) is not None


def test_a_job_its_alarm_interrupted_ends_typed_and_its_worker_is_replaced(pool):
    """The alarm can land inside a half-filled cache: the interrupted worker is not given another job."""
    before = pool.call(os.getpid, timeout_s=30).result(timeout=400)
    restarts = pool.stats["grammar_compile_worker_restarts_total"]
    with pytest.raises(CompileTimeout):
        pool.call(time.sleep, 30, timeout_s=0.5).result(timeout=60)
    after = pool.call(os.getpid, timeout_s=30).result(timeout=400)
    assert after != before and pool.stats["grammar_compile_worker_restarts_total"] == restarts + 1
    assert pool.call(os.getpid, timeout_s=30).result(timeout=400) == after  # no alarm: the worker stays
    assert pool.compile(Constraint("choice", ["a"]), timeout_s=60).result(timeout=400) is not None


def test_a_dead_worker_is_reported_and_replaced(pool):
    with pytest.raises(CompileWorkerDied):
        pool.call(os._exit, 3, timeout_s=30).result(timeout=400)
    assert pool.call(len, "abc", timeout_s=30).result(timeout=400) == 3


def test_a_grammar_whose_first_mask_is_too_slow_is_refused_in_the_worker(local):
    init = WorkerInit(vocab=VOCAB, eos_token_ids=EOS, special_token_ids=[], mask_budget_s=1e-5)
    pool = CompilePool(lambda: init, lambda: local.tokenizer, workers=1)
    try:
        with pytest.raises(GrammarTooComplex, match="grammar_mask_budget_s"):
            pool.compile(Constraint("json_schema", PERSON), timeout_s=60).result(timeout=400)
    finally:
        pool.shutdown()


@pytest.mark.parametrize("constraint", [
    Constraint("lark", 'start: start "a"'), Constraint("regex", r"[^\s\S]"),
    Constraint("json_schema", {"type": "object", "properties": {"a": {"$ref": "#"}}, "required": ["a"]})])
def test_a_constraint_with_no_finite_output_is_an_empty_language_error(pool, constraint):
    from lightllm_struct.grammar.errors import EmptyLanguageError

    with pytest.raises(EmptyLanguageError):
        pool.compile(constraint, timeout_s=60).result(timeout=400)


def test_workers_run_below_the_engines_cpu_priority(pool):
    # compiles running to their deadline must not take the cores the step loop needs (issue 11 load test)
    from lightllm_struct.engine.compile_worker import WORKER_NICENESS

    ours = os.nice(0)
    assert pool.call(os.nice, 0, timeout_s=30).result(timeout=400) == min(19, ours + WORKER_NICENESS)


def test_a_worker_that_grew_past_its_allowance_is_recycled_after_its_job(local):
    init = WorkerInit(vocab=VOCAB, eos_token_ids=EOS, special_token_ids=[], mask_budget_s=5.0)
    pool = CompilePool(lambda: init, lambda: local.tokenizer, workers=1, recycle_mb=32)
    try:
        first = pool.call(os.getpid, timeout_s=30).result(timeout=400)
        assert pool.call(hog, 8, timeout_s=30).result(timeout=400) is None  # under 32 MB: kept
        assert pool.call(os.getpid, timeout_s=30).result(timeout=400) == first
        assert pool.call(hog, 64, timeout_s=30).result(timeout=400) is None  # answered, then replaced
        second = pool.call(os.getpid, timeout_s=30).result(timeout=400)
        assert second != first and pool.stats["grammar_compile_worker_recycles_total"] == 1
        assert pool.compile(Constraint("choice", ["a"]), timeout_s=60).result(timeout=400) is not None
    finally:
        pool.shutdown()


def test_a_future_says_when_a_worker_took_its_job(pool):
    # the fuzz harness times a compile from here, apart from the wait for a free or restarting worker
    before = time.monotonic()
    future = pool.call(time.sleep, 0.2, timeout_s=30)
    assert future.result(timeout=400) is None
    assert future.started_at is not None and before <= future.started_at <= time.monotonic() - 0.2

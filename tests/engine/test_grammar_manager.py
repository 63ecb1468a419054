"""The grammar hook without a model: async compile, waiting state, failures, cache, batch bitmask."""
from __future__ import annotations

import threading
import time

import pytest
import torch

from lightllm_struct.engine.grammar_manager import GrammarManager
from lightllm_struct.engine.matcher_like import SampledTokenRejected
from lightllm_struct.request import Constraint
from lightllm_struct.engine.sequence import Sequence
from lightllm_struct.errors import InvalidRequestError
from lightllm_struct.grammar.errors import CompileTimeout, SchemaError
from lightllm_struct.request import Request, RequestStatus, SamplingParams


class FakeCompiler:
    """Compiles to the set of allowed token ids; ``gate`` lets a test hold compiles back."""

    def __init__(self):
        self.gate = threading.Event()
        self.gate.set()
        self.calls = 0

    def compile_choice(self, choices):
        self.calls += 1
        self.gate.wait(10)
        return {int(c) for c in choices}

    def compile_json_schema(self, schema, **_):
        self.calls += 1
        raise SchemaError("bad type", pointer="/properties/x")


class FakeMatcher:
    def __init__(self, allowed):
        self.allowed = allowed

    def fill_next_token_bitmask(self, mask, index=0, *, max_tokens_left=None):
        mask[index] = 0
        for t in self.allowed:
            mask[index, t // 32] |= 1 << (t % 32)

    def accept_token(self, t):
        return t in self.allowed

    def shortest_finish(self):
        return 1.0

    def is_terminated(self):
        return False


def _manager(compiler, **kw):
    return GrammarManager(None, vocab_size=70, compiler=compiler, matcher_cls=FakeMatcher, **kw)


def _seq(constraint):
    return Sequence(req=Request(prompt_token_ids=[1], sampling=SamplingParams(), constraint=constraint), seed=0,
                    detokenizer=None)


def _poll_until(manager, n=1, timeout=5.0):
    deadline, ready, failed = time.monotonic() + timeout, [], []
    while manager.num_pending and len(ready) + len(failed) < n and time.monotonic() < deadline:
        manager.wait(0.05)
        r, f = manager.poll()
        ready += r
        failed += f
    return ready, failed


def test_compile_runs_off_the_loop_while_the_request_waits():
    compiler = FakeCompiler()
    compiler.gate.clear()
    manager = _manager(compiler)
    seq = _seq(Constraint("choice", ["3", "40"]))
    assert manager.submit(seq) is False
    assert seq.status == RequestStatus.WAITING_FOR_GRAMMAR and manager.poll() == ([], [])
    compiler.gate.set()
    ready, failed = _poll_until(manager)
    assert ready == [seq] and not failed and seq.status == RequestStatus.WAITING and seq.matcher.allowed == {3, 40}


def test_equal_constraints_hit_the_cache_and_are_ready_at_once():
    compiler = FakeCompiler()
    manager = _manager(compiler)
    manager.submit(_seq(Constraint("choice", ["1"])))
    _poll_until(manager)
    assert manager.submit(_seq(Constraint("choice", ["1"]))) is True
    assert compiler.calls == 1 and manager.stats["grammar_cache_hits_total"] == 1
    assert manager.stats["grammar_cache_entries"] == 1  # one entry for the two equal constraints
    a = Constraint("json_schema", {"type": "object", "properties": {"a": {}}})
    b = Constraint("json_schema", '{"properties": {"a": {}}, "type": "object"}')
    assert a.canonical() == b.canonical()


def test_failed_and_timed_out_compiles_fail_only_their_request():
    compiler = FakeCompiler()
    manager = _manager(compiler, timeout_s=0.2)
    bad = _seq(Constraint("json_schema", {"type": "nope"}))
    manager.submit(bad)
    ready, failed = _poll_until(manager)
    assert failed[0][0] is bad and isinstance(failed[0][1], SchemaError) and "/properties/x" in str(failed[0][1])
    again = _seq(Constraint("json_schema", {"type": "nope"}))
    assert manager.submit(again) is False
    assert _poll_until(manager)[1][0][0] is again and compiler.calls == 2  # a failed compile is not cached
    compiler.gate.clear()
    slow = _seq(Constraint("choice", ["5"]))
    manager.submit(slow)
    time.sleep(0.3)
    ready, failed = manager.poll()
    assert isinstance(failed[0][1], CompileTimeout)
    compiler.gate.set()
    manager.shutdown()


def test_batch_bitmask_has_all_ones_for_free_rows():
    manager = _manager(FakeCompiler())
    constrained, free = _seq(Constraint("choice", ["2", "33"])), _seq(None)
    manager.submit(constrained)
    _poll_until(manager)
    assert manager.fill_bitmask([free]) is None
    mask = manager.fill_bitmask([free, constrained])
    assert mask.shape == (2, 3) and mask.dtype == torch.int32
    assert (mask[0] == -1).all() and mask[1].tolist() == [1 << 2, 1 << 1, 0]
    manager.accept(constrained, 33)
    with pytest.raises(SampledTokenRejected) as rejected:
        manager.accept(constrained, 7)
    assert rejected.value.http_status == 500  # the engine's mask and sampler disagree: never the user's fault


def test_reused_bitmask_buffer_never_leaks_a_previous_row():
    """The batch mask is one buffer reused every step: a row that held a constrained request's mask must be
    all ones when a free request takes that row next, and growing the batch keeps every row right."""
    manager = _manager(FakeCompiler())
    a, b, free = _seq(Constraint("choice", ["2"])), _seq(Constraint("choice", ["40"])), _seq(None)
    for seq in (a, b):
        manager.submit(seq)
    _poll_until(manager, n=2)
    first = manager.fill_bitmask([a]).clone()
    assert first[0].tolist() == [1 << 2, 0, 0]
    mask = manager.fill_bitmask([free, b, a])
    assert mask.shape == (3, 3)
    assert (mask[0] == -1).all() and mask[1].tolist() == [0, 1 << 8, 0] and mask[2].tolist() == [1 << 2, 0, 0]
    mask = manager.fill_bitmask([b, free])
    assert mask.shape == (2, 3) and mask[0].tolist() == [0, 1 << 8, 0] and (mask[1] == -1).all()
    manager.shutdown()


def test_constraint_validation():
    with pytest.raises(InvalidRequestError):
        Constraint("xml", "<a/>")
    with pytest.raises(InvalidRequestError):
        Constraint("choice", [])
    with pytest.raises(InvalidRequestError):
        Constraint("regex", {"a": 1})


def test_a_choice_list_bounds_the_output_for_admission():
    manager = _manager(FakeCompiler())
    seq = _seq(Constraint("choice", ["12", "345"]))
    manager.submit(seq)
    _poll_until(manager)
    assert seq.output_bound == 4  # 3 bytes at most, one token a byte at worst, then EOS
    assert _seq(None).output_bound is None


def test_warm_up_builds_the_compiler_and_warms_the_grammar_machinery():
    from lightllm_struct.grammar import GrammarCompiler
    from lightllm_struct.grammar.warmup import WarmupReport

    from tests.grammar.small_vocab import small_tokenizer

    manager = GrammarManager(None, vocab_size=small_tokenizer().vocab_size, compiler=GrammarCompiler(small_tokenizer()))
    try:
        report = manager.warm_up().result(timeout=120)
        assert isinstance(report, WarmupReport) and report.tokens > 0
        assert manager.stats["grammar_warmup_seconds"] > 0
    finally:
        manager.shutdown()


def test_a_failed_warm_up_is_logged_and_compiles_still_work(caplog):
    manager = _manager(FakeCompiler())  # the fake compiler cannot compile the warm-up schema
    try:
        with caplog.at_level("WARNING"):
            future = manager.warm_up()
            with pytest.raises(SchemaError):
                future.result(timeout=10)
            time.sleep(0.1)  # the done-callback logs right after the result is set
        assert "grammar warm-up failed" in caplog.text
        seq = _seq(Constraint("choice", ["3", "5"]))
        if not manager.submit(seq):
            ready, failed = _poll_until(manager)
            assert ready == [seq] and not failed
        assert seq.matcher.allowed == {3, 5}
    finally:
        manager.shutdown()


class SizedGrammar(frozenset):
    """A fake grammar (allowed token ids) that reports a size, as ``CompiledGrammar.nbytes`` does."""

    def nbytes(self) -> int:
        return 600


class SizedCompiler(FakeCompiler):
    def compile_choice(self, choices):
        return SizedGrammar(super().compile_choice(choices))


def _ready(manager, seq):
    assert manager.submit(seq) or _poll_until(manager)[0] == [seq]
    return seq


def test_the_cache_is_bounded_in_bytes_and_keeps_grammars_in_use():
    manager = _manager(SizedCompiler(), cache_max_bytes=1000)
    first = _ready(manager, _seq(Constraint("choice", ["3"])))
    assert manager.stats["grammar_cache_bytes"] == 600 and manager.stats["grammar_cache_entries"] == 1
    second = _ready(manager, _seq(Constraint("choice", ["40"])))
    # 1200 bytes over a bound of 1000, but both grammars have a live matcher: neither is evicted
    assert manager.stats["grammar_cache_entries"] == 2 and manager.stats["grammar_cache_evictions_total"] == 0
    first.matcher = None  # its request ended
    assert manager.remeasure_cache() == 600
    assert manager.stats["grammar_cache_entries"] == 1 and manager.stats["grammar_cache_bytes"] == 600
    assert manager.stats["grammar_cache_evictions_total"] == 1
    again = _seq(Constraint("choice", ["40"]))  # the one still cached: a hit
    assert manager.submit(again) and manager.stats["grammar_cache_hits_total"] == 1
    del second, again


def test_a_pending_compile_is_never_evicted():
    compiler = SizedCompiler()
    manager = _manager(compiler, cache_max_bytes=100)
    compiler.gate.clear()
    waiting = _seq(Constraint("choice", ["3"]))
    assert manager.submit(waiting) is False
    assert manager.remeasure_cache() == 0 and manager.stats["grammar_cache_entries"] == 1
    compiler.gate.set()
    assert _poll_until(manager)[0] == [waiting]  # 600 bytes over 100, but its request walks it
    assert manager.stats["grammar_cache_entries"] == 1
    waiting.matcher = None
    assert manager.remeasure_cache() == 600 and manager.stats["grammar_cache_entries"] == 0

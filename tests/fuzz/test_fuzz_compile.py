"""The compile fuzz harness, CI slice: every hostile or random constraint ends in a grammar or a typed error
within its deadline, in worker processes under a memory cap, and the pool keeps serving.

The full run (>= 10,000 constraints) is ``benchmarks/fuzz_bench.py``. ``untyped`` counts compiles that ended
in the worker's catch-all (an exception nobody typed: a converter bug, still a clean 400 for the client); there
must be none (wrong-typed keywords are refused by the metaschema check, by pointer).
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from lightllm_struct.engine.compile_pool import KILL_GRACE_S, CompilePool
from lightllm_struct.engine.compile_worker import WorkerInit
from lightllm_struct.errors import LightLLMStructError
from lightllm_struct.grammar import GrammarCompiler, TokenizerInfo
from lightllm_struct.request import Constraint
from tests.fuzz import corpus, harness
from tests.grammar.json_schema.corpus import corpus_dir

VOCAB = [bytes([b]) for b in range(256)] + [b'{"', b'":', b"true", b"false", b"null", b"abc", b"<eos>"]
EOS = [len(VOCAB) - 1]
DEADLINE_S = 2.0
# Every compile ends in a grammar or a typed error: an untyped ending is a converter bug (none is left).
MAX_UNTYPED_PATHOLOGICAL = 0
MAX_UNTYPED_MUTATED = 0


@pytest.fixture(scope="module")
def pool():
    local = GrammarCompiler(TokenizerInfo.from_vocab(VOCAB, eos_token_ids=EOS))
    init = WorkerInit(vocab=VOCAB, eos_token_ids=EOS, special_token_ids=[], mask_budget_s=1.0, memory_mb=1024,
                      compiler_options={"compile_timeout_s": DEADLINE_S})
    pool = CompilePool(lambda: init, lambda: local.tokenizer, workers=2)
    harness.warm(pool)
    yield pool
    pool.shutdown()


def _check(out: harness.Outcome, n: int, max_untyped: int) -> None:
    assert out.total == n
    assert out.late == [], out.late
    assert len(out.untyped) <= max_untyped, out.untyped


def test_pathological_constraints_end_typed_within_the_deadline(pool):
    cases = corpus.pathological()
    out = harness.run(pool, cases, deadline_s=DEADLINE_S, batch=1)
    _check(out, len(cases), MAX_UNTYPED_PATHOLOGICAL)
    assert out.codes["grammar_too_complex"] >= 4 and out.codes["empty_language"] >= 3, out.summary()


def test_mutated_corpus_schemas_end_typed_within_the_deadline(pool):
    schemas = corpus.corpus_schemas(corpus_dir())
    out = harness.run(pool, corpus.mutated(schemas, 60, seed=11), deadline_s=DEADLINE_S, batch=1)
    _check(out, 60, MAX_UNTYPED_MUTATED)


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(corpus.SCHEMAS)
def test_generated_schemas_end_in_a_grammar_or_a_typed_error(pool, schema):
    import time

    start = time.monotonic()
    try:
        pool.compile(Constraint("json_schema", schema), timeout_s=DEADLINE_S).result(timeout=120)
    except LightLLMStructError as exc:
        assert exc.message != harness.UNTYPED, schema
    assert time.monotonic() - start < DEADLINE_S + KILL_GRACE_S + 1.0 + 60  # + a replacement worker's start

"""The grammar warm-up: one schema compiled and walked, the compiled walks loaded, later compiles alike."""
from __future__ import annotations

import json

import jsonschema
import pytest

from lightllm_struct.grammar import GrammarCompiler, Matcher
from lightllm_struct.grammar.lexing import product_jit
from lightllm_struct.grammar.masks import scan_jit
from lightllm_struct.grammar.warmup import WARMUP_INSTANCE, WARMUP_SCHEMA, warm_up

from .grammar_helpers import greedy_tokenize
from .small_vocab import small_tokenizer


def test_warmup_instance_is_valid_for_its_schema():
    jsonschema.validate(WARMUP_INSTANCE, WARMUP_SCHEMA)  # the independent validator


def test_warm_up_walks_the_instance_and_loads_the_compiled_code():
    compiler = GrammarCompiler(small_tokenizer())
    report = warm_up(compiler)
    assert report.tokens > 0 and report.compile_s >= 0 and report.walk_s >= 0
    if scan_jit.AVAILABLE:  # both trie walks and the product construction are compiled now, not mid-request
        for fn in (scan_jit._walk, scan_jit._wide, product_jit._product):
            assert fn.signatures, fn


def test_a_schema_after_the_warm_up_compiles_and_walks():
    tok = small_tokenizer()
    compiler = GrammarCompiler(tok)
    warm_up(compiler)
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "n": {"type": "integer"}}}
    instance = {"city": "Paris", "n": 3}
    matcher = Matcher(compiler.compile_json_schema(schema))
    for token in greedy_tokenize(tok, json.dumps(instance, separators=(",", ":")).encode()):
        assert matcher.accept_token(token)
    assert matcher.is_complete()


def test_warm_up_reports_a_vocabulary_that_cannot_spell_the_instance():
    from lightllm_struct.grammar import TokenizerInfo

    tok = TokenizerInfo.from_vocab([b"</s>", b"{", b"}"], eos_token_ids=[0])
    with pytest.raises(RuntimeError, match="warm-up"):
        warm_up(GrammarCompiler(tok))

"""Size scaling of compiles (issue 14): big enums compile to an exact grammar (timings live in
benchmarks/cold_bench.py, not here)."""
from __future__ import annotations

import json

import jsonschema

from lightllm_struct.grammar import GrammarCompiler, Matcher
from tests.grammar.grammar_helpers import greedy_tokenize
from tests.grammar.small_vocab import small_tokenizer


def _accepts(tok, grammar, text: str) -> bool:
    matcher = Matcher(grammar)
    return all(matcher.accept_token(t) for t in greedy_tokenize(tok, text.encode())) and matcher.is_complete()


def test_large_enum_is_exact():
    """5,000 values (checked once each against the node without its enum, not the whole enum per value)."""
    tok = small_tokenizer()
    schema = {"enum": [f"value_{i}" for i in range(5000)] + [7, None], "type": ["string", "null"]}
    grammar = GrammarCompiler(tok, compile_timeout_s=120).compile_json_schema(schema)
    for value in ["value_0", "value_4999", "value_123", None, 7, "value_5000", "value_", "value_01", "x"]:
        text = json.dumps(value)
        assert _accepts(tok, grammar, text) == jsonschema.Draft202012Validator(schema).is_valid(value), text


def test_enum_with_const_keeps_only_both():
    tok = small_tokenizer()
    schema = {"enum": ["a", "b", 1], "const": "b"}
    grammar = GrammarCompiler(tok).compile_json_schema(schema)
    for value in ["a", "b", 1, "c"]:
        text = json.dumps(value)
        assert _accepts(tok, grammar, text) == jsonschema.Draft202012Validator(schema).is_valid(value), text
    schema = {"const": 1.0, "enum": [1, 2]}  # JSON equality: 1.0 is the enum's 1
    grammar = GrammarCompiler(tok).compile_json_schema(schema)
    for text in ["1", "1.0", "2"]:
        assert _accepts(tok, grammar, text) == jsonschema.Draft202012Validator(schema).is_valid(json.loads(text)), text

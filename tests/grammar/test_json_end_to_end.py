"""JSON schemas through G2's front end and this core: walks validate, real instances are accepted."""
from __future__ import annotations

import json
import random

import jsonschema
import pytest

from lightllm_struct.grammar import GrammarCompiler, Matcher
from tests.grammar.grammar_helpers import greedy_tokenize, random_walk
from tests.grammar.small_vocab import EOS_ID, small_tokenizer

SCHEMAS = [
    ({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
      "required": ["name", "age"], "additionalProperties": False}, {"name": "Zoë \"Z\"", "age": 41}),
    ({"type": "array", "items": {"type": "number"}, "maxItems": 3}, [1.5, -2, 3e4]),
    ({"enum": ["red", "green", 3, None]}, None),
    ({"$defs": {"n": {"type": "object", "properties": {"v": {"type": "integer"}, "next": {"$ref": "#/$defs/n"}},
                      "required": ["v"], "additionalProperties": False}}, "$ref": "#/$defs/n"},
     {"v": 1, "next": {"v": 2, "next": {"v": 3}}}),
]


@pytest.fixture(scope="module")
def compiler():
    pytest.importorskip("lightllm_struct.grammar.json_schema")
    return GrammarCompiler(small_tokenizer())


@pytest.mark.timeout(120)
@pytest.mark.parametrize("schema,instance", SCHEMAS)
def test_schema_walks_validate_and_instances_pass(compiler, schema, instance):
    grammar = compiler.compile_json_schema(schema)
    rng = random.Random(0)
    finished = 0
    for _ in range(15):
        text, ended, _ = random_walk(grammar, rng, eos_ids={EOS_ID}, max_steps=60, eos_bias=0.7)
        if ended:
            jsonschema.validate(json.loads(text.decode("utf-8")), schema)
            finished += 1
    assert finished >= 5
    matcher = Matcher(grammar)
    data = json.dumps(instance, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    for tid in greedy_tokenize(small_tokenizer(), data):
        assert matcher.accept_token(tid)
    assert matcher.accept_token(EOS_ID) and matcher.is_terminated()


@pytest.mark.timeout(120)
def test_json_object_accepts_objects_only(compiler):
    matcher = Matcher(compiler.compile_json_object())
    assert not matcher.accept_bytes(b"[")
    assert matcher.accept_bytes(b'{"a":[1,{"b":null}]}') and matcher.accept_token(EOS_ID)

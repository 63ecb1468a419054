"""Completeness: every valid instance is accepted, however the text is split into tokens.

Instances come from hypothesis-jsonschema (kept only if `jsonschema` agrees they are valid, since that
generator does not know every draft 2020-12 keyword). Each compact serialisation is forced through the
matcher under the real tokenizers' own encodings (SmolLM2; Llama 3 via quicktok) and under random other
segmentations into vocabulary tokens (which split UTF-8 characters and terminals anywhere).
"""
from __future__ import annotations

import json
import random

import jsonschema
import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

import tests.grammar.hjs_compat  # noqa: F401  (hypothesis-jsonschema on new hypothesis)
from tests.grammar.keyword_schemas import KEYWORD_SCHEMAS
from tests.grammar.vocab_fixtures import (bench_schema, bench_spec, compiled_or_skip, encoder,
                                          token_of_bytes, vocab_bundle)
from tests.grammar.json_schema.spellings import respell
from tests.grammar.walks import force_trace, random_segmentation

VOCABS = ["smollm2", "llama3"]
# Benchmark schemas hypothesis-jsonschema can generate for (no recursion, no prefixItems, which it ignores).
SCHEMAS = ["tool_call_weather", "tool_choice_anyof", "ticket_enums", "nullable_fields", "shapes_oneof",
           "string_patterns", "signed_ranges", "matrix", "metrics_map", "free_json_object",
           "product_catalog", "sql_query_tool", "allof_merge"]
INLINE = {
    "unicode_strings": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 4},
    "numbers": {"type": "array", "items": {"type": "number"}, "maxItems": 5},
    "int_ranges": {"type": "array", "items": {"type": "integer", "minimum": -130, "maximum": 1001}, "maxItems": 6},
    "number_ranges": {"type": "array", "items": {"type": "number", "exclusiveMinimum": -2.5, "maximum": 1e3},
                      "maxItems": 6},
    "any_json": True,
    **{k: v for k, v in KEYWORD_SCHEMAS.items() if k != "pattern_properties"},  # its generator crashes
}
FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER  # the engine enforces formats, so must the oracle
INSTANCES = settings(max_examples=6, deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                            HealthCheck.data_too_large])


def _schema(name: str):
    return INLINE[name] if name in INLINE else bench_schema(name)


def schema_key_order(schema) -> dict[str, int]:
    """Rank of every property name by its first appearance in any ``properties`` of the schema."""
    order: dict[str, int] = {}
    stack = [schema]
    while stack:
        node = stack.pop(0)
        if isinstance(node, dict):
            for key in node.get("properties", {}) if isinstance(node.get("properties"), dict) else ():
                order.setdefault(key, len(order))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return order


def in_schema_order(value, order: dict[str, int]):
    """Declared properties in schema order, then the others as generated. The engine (like xgrammar and
    llguidance) emits properties in the schema's order, so that is the spelling a model produces."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (order.get(k, len(order)), list(value).index(k)))
        return {k: in_schema_order(value[k], order) for k in keys}
    if isinstance(value, list):
        return [in_schema_order(v, order) for v in value]
    return value


# Other spellings of the same value, once engine gaps (bounded numbers never took exponents, property names
# never took escapes): every one must be accepted under every tokenization.
OBJ_E = {"type": "object", "properties": {"\u00e9": {"type": "integer"}, "a/b": {"type": "string"}},
         "additionalProperties": {"type": "boolean"}}
SPELLINGS = [
    pytest.param({"type": "number", "minimum": 0, "maximum": 1}, "3.718e-253", id="bounded-number-exponent"),
    pytest.param({"type": "number", "exclusiveMinimum": 0}, "1e16", id="exclusive-minimum-exponent"),
    pytest.param({"type": "number", "minimum": 0, "maximum": 1000}, "1.5E+2", id="upper-exponent-sign"),
    pytest.param({"type": "number", "minimum": -1, "maximum": 1e-3}, "-10.0e-001", id="leading-zero-exponent"),
    pytest.param({"const": 150}, "0.15e3", id="const-number-exponent"),
    pytest.param({"type": "object", "additionalProperties": {"type": "integer"}}, '{"\\u00e9":0}', id="u-escaped-key"),
    pytest.param(OBJ_E, '{"\\u00e9":1,"a/b":"x","\\ud83d\\ude00":true}', id="declared-keys-ensure-ascii"),
    pytest.param({"enum": ["\u00e9t\u00e9", 2]}, '"\\u00e9t\\u00e9"', id="enum-string-ensure-ascii"),
]
# Spellings only literal_escapes="any" takes for declared keys and enum strings (the default forces the
# json.dumps spellings, so that a model cannot wander into escapes of an ASCII key).
ANY_ESCAPE_SPELLINGS = [
    pytest.param(OBJ_E, '{"\\u00E9":1,"a\\/b":"x","\\ud83d\\ude00":true}', id="declared-keys-escaped"),
    pytest.param({"enum": ["\u00e9t\u00e9", 2]}, '"\\u00e9t\\u00E9"', id="enum-string-escaped"),
    pytest.param({"type": "object", "properties": {"kind": {"const": "meal"}}}, '{"\\u006bind":"m\\u0065al"}',
                 id="ascii-key-and-const-escaped"),
]
# Wrong values in such spellings: an escaped declared key is that key (its schema applies, it appears once).
WRONG_SPELLINGS = [
    pytest.param({"type": "number", "minimum": 0, "maximum": 1}, "1.0001e0", id="number-above"),
    pytest.param({"type": "number", "exclusiveMinimum": 0}, "0e16", id="zero-exclusive"),
    pytest.param(OBJ_E, '{"\\u00e9":true}', id="escaped-declared-key-with-extra-value"),
    pytest.param(OBJ_E, '{"\\u00e9":1,"\\u00e9":2}', id="escaped-declared-key-twice"),
]


@pytest.mark.parametrize(("schema", "text"), SPELLINGS)
def test_other_spellings_are_accepted(schema, text):
    assert jsonschema.Draft202012Validator(schema).is_valid(json.loads(text))
    check_text(schema, text, 0, require=_must)


@pytest.mark.parametrize(("schema", "text"), ANY_ESCAPE_SPELLINGS)
def test_any_escape_spellings_of_literals_need_the_option(schema, text):
    assert jsonschema.Draft202012Validator(schema).is_valid(json.loads(text))
    check_text(schema, text, 0, require=_must, literal_escapes="any")
    for vocab_name in VOCABS:  # the default refuses the spelling (the value stays reachable in its own)
        vocab, eos, _ = vocab_bundle(vocab_name)
        grammar = compiled_or_skip(vocab_name, json.dumps(schema))
        assert force_trace(grammar, len(vocab), encoder(vocab_name)(text), eos) != "ok", (vocab_name, text)


@pytest.mark.parametrize(("schema", "text"), WRONG_SPELLINGS)
@pytest.mark.parametrize("literal_escapes", ["canonical", "any"])
def test_wrong_values_in_other_spellings_are_rejected(schema, text, literal_escapes):
    for vocab_name in VOCABS:
        vocab, eos, _ = vocab_bundle(vocab_name)
        grammar = compiled_or_skip(vocab_name, json.dumps(schema), literal_escapes=literal_escapes)
        verdict = force_trace(grammar, len(vocab), encoder(vocab_name)(text), eos)
        assert verdict != "ok", f"{vocab_name} accepted {text!r}"


def _must(condition: bool) -> None:
    assert condition  # outside hypothesis: hand-written cases must meet every precondition


def check_instance(schema, instance, seed: int, *, ensure_ascii: bool = False, require=assume) -> None:
    require(jsonschema.Draft202012Validator(schema, format_checker=FORMATS).is_valid(instance))
    instance = in_schema_order(instance, schema_key_order(schema))
    check_text(schema, json.dumps(instance, separators=(",", ":"), ensure_ascii=ensure_ascii), seed,
               require=require)


def check_text(schema, text: str, seed: int, *, require=assume, literal_escapes: str = "canonical") -> None:
    """``text`` (a valid instance) is accepted under own and random tokenizations of both vocabularies."""
    data = text.encode("utf-8")
    for vocab_name in VOCABS:
        vocab, eos, _ = vocab_bundle(vocab_name)
        grammar = compiled_or_skip(vocab_name, json.dumps(schema), literal_escapes=literal_escapes)
        own = encoder(vocab_name)(text)
        table, max_len = token_of_bytes(vocab_name)
        # Some vocabularies lack a few byte tokens (SmolLM2 has no token for byte 0xF1), and the tokenizer
        # then drops them: such text is beyond what the model can emit at all, so it is not a test case.
        require(b"".join(vocab[t] for t in own) == data and all(bytes([b]) in table for b in set(data)))
        rng = random.Random(seed)
        tokenizations = {"own encoding": own,
                         "random split": random_segmentation(data, table, max_len, rng),
                         "byte-heavy split": random_segmentation(data, table, 2, rng)}
        for label, tokens in tokenizations.items():
            verdict = force_trace(grammar, len(vocab), tokens, eos)
            assert verdict == "ok", f"{vocab_name} {label}: {verdict} on {text!r}"


@pytest.mark.parametrize("name", SCHEMAS + sorted(INLINE))
@INSTANCES
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_generated_instances_are_accepted(name, data, seed):
    schema = _schema(name)
    check_instance(schema, data.draw(from_schema(schema), label="instance"), seed)


@pytest.mark.parametrize("name", ["unicode_strings", "tool_call_weather", "metrics_map"])
@settings(max_examples=5, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_escaped_unicode_spelling_is_accepted(name, data, seed):
    """``\\uXXXX`` escapes (json.dumps with ensure_ascii) are the same JSON value and must be accepted."""
    schema = _schema(name)
    check_instance(schema, data.draw(from_schema(schema), label="instance"), seed, ensure_ascii=True)


@pytest.mark.parametrize("name", ["signed_ranges", "number_ranges", "metrics_map", "tool_call_weather",
                                  "unicode_strings"])
@settings(max_examples=5, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_generated_instances_in_other_spellings(name, data, seed):
    """Floats with exponents (e/E, signs, leading zeros, fraction + exponent), strings and keys with random
    escapes: the same JSON value, so accepted (keys and enum strings in any spelling: literal_escapes="any")."""
    schema = _schema(name)
    instance = data.draw(from_schema(schema), label="instance")
    assume(jsonschema.Draft202012Validator(schema, format_checker=FORMATS).is_valid(instance))
    text = respell(in_schema_order(instance, schema_key_order(schema)), random.Random(seed))
    note(text)
    check_text(schema, text, seed, literal_escapes="any")


@pytest.mark.parametrize("stem", ["person", "address_book", "calendar_event", "network_config", "invoice",
                                  "recursive_tree", "linked_list", "article", "user_profile_optional",
                                  "geo_feature"])
def test_benchmark_instances_are_accepted_under_every_split(stem):
    """The hand-written instances (formats, recursion, long strings) under own and random tokenizations."""
    spec = bench_spec(stem)
    for seed in range(3):
        check_instance(spec["schema"], spec["instance"], seed, require=_must)

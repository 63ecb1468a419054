"""Soundness: whatever allowed token a sampler picks, a finished output is valid.

Random walks pick any token of the filled bitmask at each step (EOS when allowed, with some probability)
on the default model's vocabulary (SmolLM2, 49k byte-level BPE tokens that cross terminal boundaries and
split UTF-8 characters). Every finished output is checked by an independent validator: `jsonschema` for
schemas, `re.fullmatch` for regexes, a lark LALR parse for grammars, set membership for choices.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

import jsonschema
import lark
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.grammar.keyword_schemas import KEYWORD_SCHEMAS
from tests.grammar.vocab_fixtures import bench_schema, compiled_or_skip, compiler, vocab_bundle
from tests.grammar.walks import random_walk

VOCAB = "smollm2"
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
WALKS = settings(max_examples=4, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow])
JSON_CLOSERS = (b'"', b"}", b"]", b"0")

BENCH_SCHEMAS = ["person", "tool_call_weather", "tool_choice_anyof", "ticket_enums", "nullable_fields",
                 "shapes_oneof", "string_patterns", "signed_ranges", "matrix", "recursive_tree", "linked_list",
                 "calendar_event", "network_config", "allof_merge", "geo_feature", "metrics_map",
                 "free_json_object", "user_profile_optional"]
INLINE_SCHEMAS = {
    "short_string": {"type": "string", "maxLength": 4},
    "string_min_max": {"type": "string", "minLength": 2, "maxLength": 3},
    "number": {"type": "number"},
    "bounded_number": {"type": "number", "minimum": -1.5, "maximum": 2.25},
    "int_array": {"type": "array", "items": {"type": "integer", "minimum": -3, "maximum": 120},
                  "minItems": 2, "maxItems": 4},
    "any_value": True,
    "const_and_enum": {"type": "object", "properties": {"k": {"const": "é\"\\"}, "e": {"enum": [1, "1", None, [1]]}},
                       "required": ["k", "e"], "additionalProperties": False},
    **KEYWORD_SCHEMAS,
    "draft4": {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
               "properties": {"n": {"type": "integer", "minimum": 0, "exclusiveMinimum": True, "maximum": 9}},
               "required": ["n"], "additionalProperties": False},
}
REGEXES = [r"[a-z]{3,8}@[a-z]+\.(com|org)", r"(\+|-)?[0-9]+(\.[0-9]+)?", r"\d{4}-\d{2}-\d{2}",
           r"(é|ü|日本|😀)+x?", r"(ab|cd)*e{2,3}", r"[^\n\"]{0,12}"]
CHOICES = ["yes", "no", "maybe", "yes please", "日本語", "😀"]
GRAMMAR_DIR = Path(__file__).resolve().parents[2] / "grammars"
FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER


def check_schema_walks(schema, seed: int, whitespace: str = "compact") -> None:
    vocab, eos, _ = vocab_bundle(VOCAB)
    grammar = compiled_or_skip(VOCAB, json.dumps(schema), whitespace)
    walk = random_walk(grammar, vocab, eos, random.Random(seed), soft_cap=40, hard_cap=160, closers=JSON_CLOSERS)
    if not walk.ended:
        return  # capped before finishing: an unfinished output is not judged
    text = walk.text.decode("utf-8")  # a finished output is whole UTF-8
    if whitespace == "compact":
        assert not re.search(r'[\s]', re.sub(r'"(\\.|[^"\\])*"', '""', text)), text
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls(schema, format_checker=FORMATS).validate(json.loads(text))


@pytest.mark.parametrize("stem", BENCH_SCHEMAS)
@WALKS
@given(seed=SEEDS)
def test_bench_schema_walks_are_valid(stem, seed):
    check_schema_walks(bench_schema(stem), seed)


@pytest.mark.parametrize("name", sorted(INLINE_SCHEMAS))
@WALKS
@given(seed=SEEDS)
def test_inline_schema_walks_are_valid(name, seed):
    check_schema_walks(INLINE_SCHEMAS[name], seed)


@pytest.mark.parametrize("stem", ["tool_call_weather", "matrix"])
@settings(max_examples=4, deadline=None, derandomize=True, database=None)
@given(seed=SEEDS)
def test_flexible_whitespace_walks_are_valid_and_bounded(stem, seed):
    check_schema_walks(bench_schema(stem), seed, whitespace="flexible")


@pytest.mark.parametrize("pattern", REGEXES)
@WALKS
@given(seed=SEEDS)
def test_regex_walks_fullmatch(pattern, seed):
    vocab, eos, _ = vocab_bundle(VOCAB)
    walk = random_walk(_compiled("regex", pattern), vocab, eos, random.Random(seed))
    if walk.ended:
        assert re.fullmatch(pattern, walk.text.decode("utf-8")), walk.text


@WALKS
@given(seed=SEEDS)
def test_choice_walks_pick_a_choice(seed):
    vocab, eos, _ = vocab_bundle(VOCAB)
    walk = random_walk(_compiled("choice", json.dumps(CHOICES)), vocab, eos, random.Random(seed), p_eos=0.5)
    assert walk.ended and walk.text.decode("utf-8") in CHOICES


def _grammar_files() -> list[str]:
    return sorted(p.name for p in GRAMMAR_DIR.glob("*.lark"))


@pytest.mark.parametrize("filename", _grammar_files() or [pytest.param("none", marks=pytest.mark.skip("no grammars/"))])
@WALKS
@given(seed=SEEDS)
def test_lark_grammar_walks_parse(filename, seed):
    text = (GRAMMAR_DIR / filename).read_text(encoding="utf-8")
    vocab, eos, _ = vocab_bundle(VOCAB)
    walk = random_walk(_compiled("lark", text), vocab, eos, random.Random(seed),
                       closers=(b")", b"]", b"}", b'"', b";", b"0", b"1"))
    if walk.ended:
        lark.Lark(text, parser="lalr").parse(walk.text.decode("utf-8"))


_COMPILED: dict[tuple[str, str], object] = {}


def _compiled(kind: str, spec: str):
    key = (kind, spec)
    if key not in _COMPILED:
        c = compiler(VOCAB)
        _COMPILED[key] = {"regex": lambda: c.compile_regex(spec), "lark": lambda: c.compile_lark(spec),
                          "choice": lambda: c.compile_choice(json.loads(spec))}[kind]()
    return _COMPILED[key]

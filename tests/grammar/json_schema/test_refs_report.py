"""Preloaded documents for remote ``$ref`` (never fetched) and ``unsupported="report"`` (keywords left out,
named by pointer). Acceptance is checked against jsonschema with the same documents in its registry."""
from __future__ import annotations

import json

import jsonschema
import pytest
import referencing
from referencing.jsonschema import DRAFT202012

from lightllm_struct.grammar import Matcher
from lightllm_struct.grammar.errors import SchemaError, UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema import convert_json_schema, json_schema_to_lark
from tests.grammar.json_schema.accept import accepts, lalr_parser
from tests.grammar.json_schema.helpers import assert_well_formed, compact
from tests.grammar.vocab_fixtures import compiler, smollm2_tokenizer

REMOTE = "https://schemas.example.test/common.json"
DOCS = {REMOTE: {"$defs": {"age": {"type": "integer", "minimum": 0, "maximum": 150},
                           "name": {"type": "string", "minLength": 1, "maxLength": 8},
                           "pet": {"$ref": "#/$defs/name"}}},
        "https://schemas.example.test/draft4.json": {"$schema": "http://json-schema.org/draft-04/schema#",
                                                     "type": "number", "minimum": 1, "exclusiveMinimum": True}}
SCHEMA = {"type": "object", "properties": {
    "age": {"$ref": f"{REMOTE}#/$defs/age"},
    "pet": {"$ref": "common.json#/$defs/pet"},
    "score": {"$ref": "https://schemas.example.test/draft4.json"}},
    "required": ["age", "pet", "score"], "$id": "https://schemas.example.test/root.json"}
INSTANCES = [{"age": 3, "pet": "rex", "score": 2}, {"age": 151, "pet": "rex", "score": 2},
             {"age": -1, "pet": "rex", "score": 2}, {"age": 3, "pet": "", "score": 2},
             {"age": 3, "pet": "abcdefghi", "score": 2}, {"age": 3, "pet": "rex", "score": 1},
             {"age": 3, "pet": "rex", "score": 1.5}, {"age": 3.5, "pet": "rex", "score": 2}]


def _validator(schema, documents):
    registry = referencing.Registry().with_resources(
        (uri, referencing.Resource.from_contents(doc, default_specification=DRAFT202012))
        for uri, doc in documents.items())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def test_remote_ref_is_refused_without_documents():
    with pytest.raises(UnsupportedSchemaFeature) as info:
        json_schema_to_lark(SCHEMA)
    assert info.value.pointer == "/properties/age/$ref" and "never fetched" in info.value.message


def test_preloaded_documents_resolve_exactly():
    text = json_schema_to_lark(SCHEMA, documents=DOCS)
    assert_well_formed(text)
    parser, validator = lalr_parser(text), _validator(SCHEMA, DOCS)
    verdicts = [(accepts(parser, compact(v)), validator.is_valid(v)) for v in INSTANCES]
    assert verdicts == [(valid, valid) for _, valid in verdicts]
    assert sum(valid for _, valid in verdicts) == 2  # the first and score 1.5 (draft-04: exclusive minimum 1)


def test_preloaded_documents_bad_arguments():
    with pytest.raises(ValueError):
        json_schema_to_lark(SCHEMA, documents=[REMOTE])
    with pytest.raises(SchemaError):
        json_schema_to_lark(SCHEMA, documents={REMOTE: 3})
    with pytest.raises(SchemaError, match="does not resolve"):
        json_schema_to_lark({"$ref": f"{REMOTE}#/$defs/nope"}, documents=DOCS)


REPORTED = {"type": "object", "required": ["tags", "kind", "n"], "properties": {
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "uniqueItems": True, "maxItems": 3},
    "kind": {"oneOf": [{"type": "string", "pattern": "^a"}, {"type": "string", "format": "email"}]},
    "n": {"type": "integer", "minimum": 2},
    "code": {"not": {"type": "array", "items": {"type": "object"}, "uniqueItems": True}},
    "uniqueItems": {"type": "boolean"}}}


def test_report_mode_lists_what_it_left_out():
    with pytest.raises(UnsupportedSchemaFeature):
        convert_json_schema(REPORTED)
    conversion = convert_json_schema(REPORTED, unsupported="report")
    # the oneOf's refusal names a keyword inside its first branch: leaving that out would make the branches
    # overlap more (narrowing exactly-one), so the oneOf loses its exclusivity instead; the not goes whole
    assert conversion.unsupported == ("/properties/tags/uniqueItems", "/properties/kind/oneOf",
                                      "/properties/code/not")
    # every other keyword is still enforced: what the grammar accepts is valid for the schema without the three
    parser = lalr_parser(conversion.text)
    loosened = json.loads(json.dumps(REPORTED))
    del loosened["properties"]["tags"]["uniqueItems"], loosened["properties"]["code"]["not"]
    loosened["properties"]["kind"]["anyOf"] = loosened["properties"]["kind"].pop("oneOf")
    formats = jsonschema.Draft202012Validator.FORMAT_CHECKER
    check = jsonschema.Draft202012Validator(loosened, format_checker=formats)
    original = jsonschema.Draft202012Validator(REPORTED, format_checker=formats)
    kinds = ["abc", "a@b.co", "x@y.com", "xyz", "", 3]
    for value in [*({"tags": [], "kind": kind, "n": 2} for kind in kinds), {"tags": ["a", "a"], "kind": "a", "n": 2},
                  {"tags": ["abcdef"], "kind": "a", "n": 2}, {"tags": [], "kind": "a", "n": 1},
                  {"tags": [], "kind": "a", "n": 2, "code": [{}]}, {"tags": [], "kind": "a", "n": 2, "code": [{}, {}]},
                  {"tags": [], "kind": "a", "n": 2, "code": "x"}, {"tags": ["a"], "kind": "a", "n": 3, "uniqueItems": True},
                  {"tags": ["a"] * 4, "kind": "a", "n": 3}]:
        assert accepts(parser, compact(value)) == check.is_valid(value), value
        assert not original.is_valid(value) or check.is_valid(value), value  # only ever wider
    assert convert_json_schema(REPORTED["properties"]["n"], unsupported="report").unsupported == ()


# (schema, what report mode leaves out, instances): each reduced grammar must accept every instance the
# original schema accepts (jsonschema's verdict), i.e. leaving keywords out only ever widens the language
WIDENED = [
    ({"not": {"type": "array", "items": {"type": "object"}, "uniqueItems": True}}, ("/not",),
     [[{}, {}], [{}], [1], "x", None]),
    ({"$defs": {"u": {"type": "array", "items": {"type": "object"}, "uniqueItems": True}},
      "properties": {"p": {"$ref": "#/$defs/u"}, "q": {"not": {"$ref": "#/$defs/u"}}}},
     ("/properties/q/not", "/$defs/u/uniqueItems"),
     [{"p": [{}], "q": [{}, {}]}, {"p": [{}, {}]}, {"q": [{}]}, {"p": [], "q": 1}]),
    ({"type": "array", "contains": {"type": "string", "pattern": "(a)\\1"}, "maxContains": 1},
     ("/maxContains", "/contains/pattern"), [["aa"], ["aa", "aa"], ["b"], [1], []]),
    ({"if": {"type": "string", "pattern": "(?=a)b"}, "then": {"maxLength": 2}, "else": {"maxLength": 4}},
     ("/if",), ["ab", "abcd", "abcde", 3]),
    ({"type": "array", "minContains": 0, "maxContains": 1, "contains": {"type": "string", "pattern": "(a)\\1"}},
     ("/maxContains", "/contains/pattern"), [[], [1, 2], ["aa", "aa"], ["aa"]]),
]


@pytest.mark.parametrize("schema, left_out, instances", WIDENED)
def test_report_mode_only_widens(schema, left_out, instances):
    conversion = convert_json_schema(schema, unsupported="report")
    if left_out is not None:
        assert conversion.unsupported == left_out
    assert conversion.unsupported
    parser, check = lalr_parser(conversion.text), jsonschema.Draft202012Validator(schema)
    for value in instances:
        if check.is_valid(value):
            assert accepts(parser, compact(value)), value


def test_report_mode_refuses_with_unevaluated_keywords():
    # leaving a keyword out leaves more properties to unevaluatedProperties: that could narrow, so no report
    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": "(a)\\1"}},
              "unevaluatedProperties": False}
    with pytest.raises(UnsupportedSchemaFeature):
        convert_json_schema(schema, unsupported="report")


def test_report_mode_never_drops_a_subschema_or_a_property():
    # an empty language is no keyword to leave out: still refused
    with pytest.raises(UnsupportedSchemaFeature):
        convert_json_schema({"type": "string", "enum": [1]}, unsupported="report")
    with pytest.raises(ValueError):
        convert_json_schema(True, unsupported="ignore")


def test_report_mode_in_a_preloaded_document():
    docs = {REMOTE: {"$defs": {"set": {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}}}}
    conversion = convert_json_schema({"$ref": f"{REMOTE}#/$defs/set"}, documents=docs, unsupported="report")
    assert conversion.unsupported == (f"{REMOTE}#/$defs/set/uniqueItems",)
    assert docs[REMOTE]["$defs"]["set"]["uniqueItems"] is True  # the caller's document is not changed


def test_report_on_the_compiled_grammar():
    comp, tok = compiler("smollm2"), smollm2_tokenizer()
    schema = {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}
    grammar = comp.compile_json_schema(schema, unsupported="report")
    assert grammar.unsupported == ("/uniqueItems",)
    assert comp.compile_json_schema(schema["items"]).unsupported == ()
    matcher = Matcher(grammar)
    for token in tok.encode("[1,1]", add_special_tokens=False):
        assert matcher.accept_token(token)
    assert matcher.accept_token(tok.eos_token_id)

"""The metaschema check before conversion (json_schema/schema_check.py) and the converter bugs the compile fuzz
of issue 11 found: wrong-typed keywords are SchemaErrors with the keyword's pointer, never a TypeError from
inside the converter; the old draft-04 forms still compile without ``$schema``; each case that once ended
untyped now ends in a grammar (checked against jsonschema) or a typed error."""
from __future__ import annotations

import jsonschema
import pytest

from lightllm_struct.grammar import GrammarCompiler
from lightllm_struct.grammar.errors import GrammarTooComplex, SchemaError, UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema import json_schema_to_lark
from lightllm_struct.grammar.json_schema.schema_check import check_schema
from tests.grammar.json_schema.helpers import SchemaGrammar
from tests.grammar.small_vocab import small_tokenizer


@pytest.mark.parametrize("schema,pointer", [
    ({"anyOf": 3}, "/anyOf"),  # once: TypeError: object of type 'int' has no len()
    ({"allOf": [{"type": "string"}, 5]}, "/allOf/1"),
    ({"type": "object", "properties": {"a": {"minLength": -1}}}, "/properties/a/minLength"),
    ({"type": "object", "properties": {"a": {"maxLength": "x"}}}, "/properties/a/maxLength"),
    ({"required": "a"}, "/required"),
    ({"type": "object", "properties": []}, "/properties"),
    ({"type": "array", "items": 5}, "/items"),
    ({"type": "string", "pattern": 3}, "/pattern"),
    ({"type": "array", "prefixItems": {}}, "/prefixItems"),
    ({"type": 3}, "/type"),
    ({"multipleOf": 0}, "/multipleOf"),
])
def test_wrong_typed_keywords_are_schema_errors_with_the_pointer(schema, pointer):
    with pytest.raises(SchemaError) as err:
        json_schema_to_lark(schema)
    assert type(err.value) is SchemaError and err.value.pointer == pointer
    assert "invalid schema" in str(err.value) and "Traceback" not in str(err.value)


@pytest.mark.parametrize("schema,valid,invalid", [
    ({"type": "number", "minimum": 0, "exclusiveMinimum": True}, [1, 0.5], [0, -1]),  # draft-04 boolean form
    ({"type": "array", "items": [{"type": "integer"}], "additionalItems": False}, [[1], []], [[1, 2], ["a"]]),
    ({"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "maximum": 3,
      "exclusiveMaximum": True}, [2], [3]),
])
def test_old_draft_forms_still_compile_without_their_schema(schema, valid, invalid):
    g = SchemaGrammar(schema)
    g.validator = jsonschema.Draft4Validator(schema)  # the draft these forms come from, as the reference
    assert all(g.check(v) for v in valid)
    assert not any(g.check(v) for v in invalid)


def test_a_draft_named_by_the_caller_is_the_metaschema_checked():
    check_schema({"type": "number", "minimum": 0, "exclusiveMinimum": True}, draft="draft4")
    with pytest.raises(SchemaError) as err:
        check_schema({"type": "number", "minimum": 0, "exclusiveMinimum": True}, draft="draft2020-12")
    assert err.value.pointer == "/exclusiveMinimum"


def test_an_unknown_schema_uri_is_left_to_the_dialects_pointer():
    with pytest.raises(UnsupportedSchemaFeature) as err:
        json_schema_to_lark({"$schema": "https://example.com/nope", "type": "integer"})
    assert err.value.pointer == "/$schema"


def test_a_pattern_with_an_empty_alternative_compiles():
    # (a|a) parses as "a" then a branch of two empty sequences; is_atom("") once raised IndexError
    g = SchemaGrammar({"type": "string", "pattern": "^(a|a)*b$"})
    assert all(g.check(v) for v in ["b", "aab"])
    assert not any(g.check(v) for v in ["", "a", "ba"])


@pytest.mark.parametrize("schema", [
    {"enum": [{"a": 1}], "properties": {"a": {"$ref": "#/$defs/missing"}}},
    {"const": 1, "$ref": "#/nowhere"},
])
def test_enum_beside_a_ref_to_nowhere_is_typed(schema):
    with pytest.raises((SchemaError, UnsupportedSchemaFeature)) as err:
        json_schema_to_lark(schema)
    assert err.value.pointer is not None


def test_nesting_past_the_interpreters_stack_is_typed():
    schema: dict = {"type": "integer"}
    for _ in range(5000):
        schema = {"type": "array", "items": schema}
    with pytest.raises(GrammarTooComplex):
        GrammarCompiler(small_tokenizer(), compile_timeout_s=None).compile_json_schema(schema)


def test_a_ref_into_a_place_that_is_no_schema_is_checked_there():
    # fuzz case "mutated 3269": "#/properties" is a map of names, one of them "pattern" with an object value;
    # read as a schema its "pattern" was a dict, and merging patterns raised TypeError
    schema = {"type": "object", "properties": {
        "d": {"type": "object", "properties": {"w": {"type": "number"}}, "$ref": "#/properties"},
        "pattern": {}}}
    with pytest.raises(SchemaError) as err:
        json_schema_to_lark(schema)
    assert err.value.pointer == "/properties/d/$ref" and "/pattern" in err.value.message
    # a ref into $defs (a schema) still compiles, checked once however often it is referenced
    ok = {"$defs": {"n": {"type": "integer", "minimum": 0}}, "type": "array",
          "prefixItems": [{"$ref": "#/$defs/n"}, {"$ref": "#/$defs/n"}], "items": False}
    g = SchemaGrammar(ok)
    assert g.check([1, 2]) and not g.check([1, -2])

"""patternProperties (key classes) and pattern/format/length intersections, judged by jsonschema."""
from __future__ import annotations

import random
import re

import pytest

from lightllm_struct.grammar.errors import UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema import json_schema_to_lark
from lightllm_struct.grammar.json_schema.fsm_regex import intersection
from tests.grammar.json_schema.helpers import SchemaGrammar


@pytest.mark.parametrize("schema,values", [
    ({"type": "object", "properties": {"name": {"type": "string"}, "id": {"type": "integer"}},
      "patternProperties": {"^[a-z_]+$": {"type": "integer"}}},
     [{"name": "x"}, {"abc": 1}, {"abc": "s"}, {"Abc": "s"}, {"id": 1, "a_b": 2, "X": None}, {"name": 1}, {}]),
    ({"type": "object", "patternProperties": {".*": {"type": "integer"}}, "additionalProperties": False},
     [{"a": 1}, {"a": "s"}, {}, {"": 2}]),
    ({"type": "object", "patternProperties": {"^a": {"type": "integer"}, "b$": {"minimum": 3}},
      "additionalProperties": {"type": "string"}},
     [{"a": 1}, {"ab": 2}, {"ab": 4}, {"xb": 2}, {"xb": "s"}, {"q": "s"}, {"q": 1}, {"a": 1, "b": 5, "c": "d"}]),
    ({"type": "object", "properties": {"x": {}}, "required": ["x", "y1"],
      "patternProperties": {"[0-9]": {"type": "boolean"}}, "additionalProperties": False},
     [{"x": 1, "y1": True}, {"x": 1, "y1": 2}, {"x": 1}, {"x": 1, "y1": False, "z2": True}, {"x": 1, "y1": True, "z": 1}]),
])
def test_pattern_properties_are_exact(schema, values):
    g = SchemaGrammar(schema)
    for value in values:
        g.check(value)


def test_pattern_properties_without_a_regular_form_are_refused_by_pointer():
    with pytest.raises(UnsupportedSchemaFeature) as err:
        json_schema_to_lark({"patternProperties": {"(a)\\1": {}}})
    assert err.value.pointer == "/patternProperties/(a)\\1"


@pytest.mark.parametrize("schema,values", [
    ({"type": "string", "pattern": "^a.*b", "maxLength": 5}, ["ab", "axxb", "axxxxb", "ba", "abzzz", "abzzzz"]),
    ({"type": "string", "format": "date", "pattern": "^2024"}, ["2024-01-01", "2023-01-01", "2024-13-01"]),
    ({"type": "string", "pattern": "[0-9]", "minLength": 3, "maxLength": 12}, ["a1b", "1", "abc", "x" * 11 + "1",
                                                                              "x" * 12 + "1", "é1é"]),
])
def test_pattern_format_and_length_intersect(schema, values):
    g = SchemaGrammar(schema)
    for value in values:
        g.check(value)


def test_intersection_regex_matches_the_product_language():
    rng = random.Random(7)
    cases = [(["[a-z_]+"], ["abc", "ab_"]), (["(?:ab|cd)*x", "[abcx]*"], []), (["[0-9]{2,5}"], ["1234", "00"]),
             (["a.*", ".*b"], ["ab"])]
    for regexes, excluded in cases:
        out = intersection(regexes, excluded)
        for _ in range(400):
            text = "".join(rng.choice("abcdx_01234") for _ in range(rng.randrange(7)))
            want = all(re.fullmatch(r, text) for r in regexes) and not any(re.fullmatch(r, text) for r in excluded)
            assert bool(out is not None and re.fullmatch(out, text)) == bool(want), (regexes, excluded, text)


@pytest.mark.parametrize("schema", [
    {"type": "object", "propertyNames": {"pattern": "^[a-c]+$"}},
    {"type": "object", "properties": {"a": {}, "zz": {}}, "propertyNames": {"maxLength": 1}},
    {"type": "object", "propertyNames": {"not": {"enum": ["1", "3"]}}},
    {"propertyNames": {"enum": ["x", "y"]}, "properties": {"x": {"type": "integer"}}},
    {"type": "object", "propertyNames": False},
    {"type": "object", "propertyNames": {"$ref": "#/$defs/n"}, "$defs": {"n": {"type": "string", "minLength": 2}}},
])
def test_property_names_are_exact(schema):
    g = SchemaGrammar(schema)
    for value in ({}, {"a": 1}, {"abc": 2}, {"d": 1}, {"zz": 1}, {"1": 1}, {"2": 2}, {"x": 1}, {"y": "s"},
                  {"x": "s"}, {"a": 1, "b": 2}):
        g.check(value)


def test_property_names_with_other_keywords_are_refused_by_pointer():
    with pytest.raises(UnsupportedSchemaFeature) as err:
        json_schema_to_lark({"propertyNames": {"anyOf": [{"pattern": "a"}]}})
    assert err.value.pointer == "/propertyNames/anyOf"


@pytest.mark.parametrize("schema", [
    {"not": {"required": ["error"]}},
    {"type": "object", "properties": {"error": {"type": "string"}, "ok": {}}, "not": {"required": ["error"]}},
])
def test_not_required_one_key_is_an_object_without_it(schema):
    g = SchemaGrammar(schema)
    for value in ({}, {"a": 1}, {"error": 2}, {"ok": 1}, 1, "s", None, []):
        g.check(value)


@pytest.mark.parametrize("schema", [
    {"allOf": [{"type": "string", "pattern": "^a"}, {"pattern": "b$"}, {"pattern": "c"}]},
    {"allOf": [{"type": "string", "pattern": "^a", "maxLength": 4}, {"pattern": "b$"}]},
])
def test_patterns_merged_through_all_of_all_hold(schema):
    g = SchemaGrammar(schema)
    for value in ("ab", "acb", "ac", "cb", "abcb", "a", "acbb", "accb", "acccb", 3):
        g.check(value)

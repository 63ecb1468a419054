"""uniqueItems over finite item domains (a subset automaton): every array of a few values, accepted exactly
when jsonschema says valid; items with infinitely many values are refused by pointer."""
from __future__ import annotations

import itertools

import pytest

from lightllm_struct.grammar.errors import UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema import json_schema_to_lark
from lightllm_struct.grammar.json_schema.unique import MAX_SUBSET_RULES, value_key
from tests.grammar.json_schema.helpers import SchemaGrammar

# No [True] beside [1]: jsonschema 4.x's uniqueItems sorts items, and Python's True == 1 inside lists makes it
# call [[1], [true], [1]] unique (the spec, and value_key below, do not).
VALUES = [1, 1.0, 2, "a", "b", True, False, None, {"x": 1}, [1], [False, "a"]]
SCHEMAS = {
    "mixed_enum": {"type": "array", "items": {"enum": [1, 1.0, "a", True, None, {"x": 1}, [1], [False, "a"]]},
                   "uniqueItems": True},
    "booleans": {"type": "array", "items": {"type": "boolean"}, "uniqueItems": True, "minItems": 2},
    "tuple": {"prefixItems": [{"type": "boolean"}, {"type": ["boolean", "null"]}], "items": False,
              "uniqueItems": True},
    "tuple_then_enum": {"prefixItems": [{"const": 1}], "items": {"enum": [1, 2, "a"]}, "uniqueItems": True,
                        "minItems": 2},
    "bounded": {"type": "array", "items": {"enum": ["a", "b", 2]}, "uniqueItems": True, "minItems": 1,
                "maxItems": 2},
    "ref_and_allof": {"$defs": {"e": {"enum": ["a", "b", 2, 3]}}, "type": "array", "uniqueItems": True,
                      "items": {"allOf": [{"$ref": "#/$defs/e"}, {"type": "integer"}]}},
    "unique_false": {"type": "array", "items": {"enum": [1, 2]}, "uniqueItems": False, "maxItems": 3},
    "impossible": {"type": "array", "items": {"enum": [1, 2]}, "uniqueItems": True, "minItems": 3},
}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_small_array_agrees_with_jsonschema(name):
    schema = SCHEMAS[name]
    if name == "impossible":
        with pytest.raises(UnsupportedSchemaFeature, match="no instance"):
            json_schema_to_lark(schema)
        return
    g = SchemaGrammar(schema)
    accepted = 0
    for n in range(4):
        for arr in itertools.product(VALUES, repeat=n):
            # 1.0 is written "1.0" by json.dumps, which a const 1 does not spell: sound, so not complete there
            accepted += g.check(list(arr), complete=not any(isinstance(v, float) for v in arr))
    assert accepted > 0


def test_values_compare_as_json_schema_does():
    assert value_key(1) == value_key(1.0) and value_key(True) != value_key(1)
    assert value_key({"a": 1, "b": [1]}) == value_key({"b": [1.0], "a": 1})
    assert value_key([0]) != value_key([False]) and value_key("1") != value_key(1)


@pytest.mark.parametrize("items", [{"type": "string"}, {"type": "integer", "maximum": 3}, True,
                                   {"type": "object"}, {"anyOf": [{"const": 1}, {"const": 2}]}])
def test_infinite_or_unknown_domains_are_refused(items):
    with pytest.raises(UnsupportedSchemaFeature) as info:
        json_schema_to_lark({"type": "array", "items": items, "uniqueItems": True})
    assert info.value.pointer == "/uniqueItems"


def test_too_many_subsets_are_refused_and_short_arrays_need_no_check():
    values = list(range(12))
    with pytest.raises(UnsupportedSchemaFeature, match=str(MAX_SUBSET_RULES)):
        json_schema_to_lark({"type": "array", "items": {"enum": values}, "uniqueItems": True})
    # at most one item: unique whatever the items are
    g = SchemaGrammar({"type": "array", "items": {"type": "string"}, "uniqueItems": True, "maxItems": 1})
    assert g.check(["x"]) and g.check([])

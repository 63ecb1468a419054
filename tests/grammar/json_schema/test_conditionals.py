"""``if``/``then``/``else`` and value-constraining ``dependentSchemas`` as unions of disjoint alternatives
(conditionals.py): each grammar checked against ``jsonschema`` on a pool of values around the schema's constants,
in both directions (accepted -> valid, valid -> accepted with the keys in the engine's order), and refusals
inside a conditional named by the conditional's pointer."""
from __future__ import annotations

import itertools

import pytest

from lightllm_struct.grammar.errors import UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema import json_schema_to_lark
from tests.grammar.json_schema.helpers import SchemaGrammar, compact

_SCALARS = [None, True, False, -11, -10, -3, -1, 0, 1, 2, 3, 4, 2.5, -0.5, 10, 11, 12, "", "a", "ab", "abc", "abcd",
            "x", "1"]
_KEYS = ["a", "b", "c", "kind", "n"]
_VALUES = [1, 2, "s", "a", None, 3.5]


def _pool():
    yield from _SCALARS
    yield from ([], [1], [1, "a"], ["a"], [2, 3], [None], [[]], [{}])
    for n in range(4):
        for keys in itertools.combinations(_KEYS, n):
            for values in itertools.islice(itertools.product(_VALUES, repeat=n), 40):
                yield dict(zip(keys, values))


CASES = {
    "numbers": {"if": {"exclusiveMaximum": 0}, "then": {"minimum": -10}, "else": {"multipleOf": 2}},
    "then_only": {"type": ["integer", "string"], "if": {"type": "integer"}, "then": {"maximum": 3}},
    "else_only": {"if": {"type": "string"}, "else": {"type": ["integer", "null"]}},
    "strings": {"type": "string", "if": {"maxLength": 2}, "then": {"pattern": "^a"}, "else": {"pattern": "c"}},
    "object_value_condition": {"type": "object", "properties": {"kind": {}, "a": {}, "b": {}},
                               "if": {"properties": {"kind": {"type": "integer", "minimum": 2}}, "required": ["kind"]},
                               "then": {"required": ["a"]}, "else": {"properties": {"a": {"type": "string"}}}},
    "object_number_const": {"properties": {"n": {"type": "number"}}, "if": {"properties": {"n": {"const": 1}}},
                            "then": {"required": ["n"]}},
    "nested_in_property": {"properties": {"a": {"if": {"type": "integer", "minimum": 2},
                                                "then": {"multipleOf": 2}, "else": {"type": ["string", "integer"]}}}},
    "two_ifs_merged": {"allOf": [{"if": {"type": "integer"}, "then": {"minimum": 1}},
                                 {"if": {"minimum": 3}, "then": {"maximum": 10}, "else": {"type": ["integer", "null"]}}]},
    "if_beside_any_of": {"anyOf": [{"type": "integer"}, {"type": "string"}],
                         "if": {"type": "string"}, "then": {"minLength": 2}, "else": {"maximum": 2}},
    "if_in_items": {"type": "array", "items": {"if": {"type": "string"}, "then": {"maxLength": 1}}, "maxItems": 3},
    "dependent_schema_values": {"type": "object", "properties": {"a": {}, "b": {}, "c": {}},
                                "dependentSchemas": {"a": {"properties": {"b": {"type": "string"}}},
                                                     "c": {"required": ["b"]}}},
    "dependent_schema_untyped": {"dependentSchemas": {"b": {"properties": {"a": {"type": "integer"},
                                                                           "b": {"type": "integer"}}}}},
    "dependent_schemas_merged": {"allOf": [{"dependentSchemas": {"a": {"properties": {"b": {"type": "integer"}}}}},
                                           {"dependentSchemas": {"a": {"properties": {"b": {"minimum": 2}}},
                                                                 "c": {"maxProperties": 2}}}]},
    "draft7_dependencies": {"$schema": "http://json-schema.org/draft-07/schema#",
                            "dependencies": {"kind": {"properties": {"a": {"const": 1}}, "required": ["a"]},
                                             "b": ["a"]}},
}


def _orders(value):
    """``value`` with its keys in every order (a union branch writes its first required key first)."""
    if not isinstance(value, dict):
        return [value]
    return [dict((k, value[k]) for k in keys) for keys in itertools.permutations(value)]


def _check(g: SchemaGrammar, value) -> bool:
    """Accepted in some key order exactly when ``jsonschema`` says valid (any accepted order is checked)."""
    got = [g.accepts(compact(v)) for v in _orders(value)]
    valid = g.validator.is_valid(value)
    assert not any(got) or valid, f"accepted an invalid instance: {compact(value)}"
    assert any(got) or not valid, f"rejected a valid instance in every key order: {compact(value)}"
    return valid


@pytest.mark.parametrize("name", sorted(CASES))
def test_exact_against_jsonschema(name):
    g = SchemaGrammar(CASES[name])
    results = [_check(g, value) for value in _pool()]
    assert any(results) and not all(results)


def test_arrays_of_conditional_items_under_every_combination():
    g = SchemaGrammar(CASES["if_in_items"])
    items = ["", "a", "ab", 1, None]
    for n in range(4):
        for value in itertools.product(items, repeat=n):
            g.check(list(value))


@pytest.mark.parametrize("schema, pointer", [
    ({"if": {"format": "email"}, "then": {"minimum": 1}}, "/if"),  # ¬format has no exact form here
    ({"properties": {"x": {"if": {"format": "email"}, "then": {"maxLength": 9}}}}, "/properties/x/if"),
    ({"type": "object", "dependentSchemas": {"a~b": {"not": {"format": "email"}}}}, "/dependentSchemas/a~0b"),
])
def test_refusals_inside_a_conditional_name_it(schema, pointer):
    with pytest.raises(UnsupportedSchemaFeature) as err:
        json_schema_to_lark(schema)
    assert err.value.pointer == pointer

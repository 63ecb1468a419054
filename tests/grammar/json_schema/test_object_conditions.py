"""Key-presence conditions and property counts inside the object rules (presence.py, object_states.py).

Every subset of a small key universe (each with and without an undeclared key), written in the engine's key
order, is accepted exactly when ``jsonschema`` says valid: complete and sound on all of them.
"""
from __future__ import annotations

import itertools

import pytest

from lightllm_struct.grammar.errors import UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema import json_schema_to_lark
from tests.grammar.json_schema.helpers import SchemaGrammar

D7 = "http://json-schema.org/draft-07/schema#"
ANY4 = {k: {} for k in "abcd"}
SCHEMAS = {
    "dependent_required_both_ways": {"type": "object", "properties": {k: {"type": "integer"} for k in "abcd"},
                                     "dependentRequired": {"a": ["c"], "d": ["b"]}},
    "dependent_required_closed": {"type": "object", "properties": ANY4, "additionalProperties": False,
                                  "dependentRequired": {"c": ["a", "d"], "b": ["b"]}},
    "draft7_dependencies": {"$schema": D7, "type": "object", "properties": {"a": {}, "b": {}},
                            "dependencies": {"a": ["b"], "b": {"required": ["c"]}}},
    "draft4_dependencies_undeclared": {"$schema": "http://json-schema.org/draft-04/schema#",
                                       "dependencies": {"c": ["zz"]}, "properties": {"a": {}}},
    "min_max_properties": {"type": "object", "properties": ANY4, "minProperties": 2, "maxProperties": 3},
    "min_properties_extras_only": {"type": "object", "minProperties": 2},
    "max_properties_with_required": {"type": "object", "properties": ANY4, "required": ["b"], "maxProperties": 2},
    "any_of_required": {"type": "object", "properties": ANY4, "anyOf": [{"required": ["a"]}, {"required": ["b", "c"]}]},
    "one_of_required": {"type": "object", "properties": ANY4, "oneOf": [{"required": ["a"]}, {"required": ["b"]}]},
    "one_of_untyped": {"properties": ANY4, "oneOf": [{"required": ["a"]}, {"not": {"required": ["b"]}}]},
    "if_then_else": {"properties": ANY4, "if": {"required": ["a"]}, "then": {"required": ["d"]},
                     "else": {"not": {"required": ["d"]}}},
    "if_object_typed": {"properties": ANY4, "if": {"type": "object", "required": ["c"]}, "then": {"required": ["a"]}},
    "dependent_schemas_presence": {"type": "object", "properties": ANY4,
                                   "dependentSchemas": {"a": {"required": ["b"]}, "b": {"not": {"required": ["zz"]}},
                                                        "d": False}},
    "pattern_keys_conditions": {"$schema": D7, "type": "object", "patternProperties": {"^[a-e]$": True},
                                "additionalProperties": False, "minProperties": 2,
                                "allOf": [{"dependencies": {"a": {"anyOf": [{"required": ["b"]}, {"required": ["c"]}]},
                                                            "b": {"not": {"required": ["a"]}}}},
                                          {"required": ["d"]}]},
    "nested_in_array": {"type": "array", "maxItems": 2,
                        "items": {"type": "object", "properties": {"a": {}, "b": {}}, "dependentRequired": {"b": ["a"]}}},
}


def _order(schema: dict) -> list[str]:
    """The engine's key order: declared, then required, then other keys the conditions name (universe order)."""
    node = schema.get("allOf", [{}])[-1] if "allOf" in schema else {}
    return list(dict.fromkeys([*schema.get("properties", {}), *schema.get("required", []), *node.get("required", []),
                               *"abcd"]))


def _objects(keys: list[str]):
    for r in range(len(keys) + 1):
        for chosen in itertools.combinations(keys, r):
            value = {k: 1 for k in chosen}
            yield value
            yield {**value, "zz": 2}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_key_subset_agrees_with_jsonschema(name):
    schema = SCHEMAS[name]
    g = SchemaGrammar(schema)
    values = list(_objects(_order(schema)))
    if schema.get("type") == "array":
        values = [[]] + [[v] for v in values] + [[v, w] for v, w in zip(values, values[3:])]
    accepted = sum(g.check(v) for v in values)
    for other in (1, "x", None, [1], True):
        g.check(other)
    assert 0 < accepted < len(values) or name == "draft4_dependencies_undeclared"


DISCRIMINATED = {
    "if_const_then_required": (
        {"type": "object", "properties": {"kind": {"enum": ["a", "b", "c"]}, "x": {}, "y": {}},
         "if": {"properties": {"kind": {"const": "a"}}, "required": ["kind"]}, "then": {"required": ["x"]},
         "else": {"not": {"required": ["x"]}}},
        [{"kind": k, **({"x": 1} if x else {}), **({"y": 1} if y else {})} for k in "abcd" for x in (0, 1)
         for y in (0, 1)] + [{}, {"x": 1}]),
    "if_enum_on_free_string": (
        {"type": "object", "properties": {"kind": {"type": "string", "maxLength": 3}, "x": {}},
         "if": {"properties": {"kind": {"enum": ["a", "b", 3]}}}, "then": {"required": ["x"]}},
        [{"kind": k, **({"x": 1} if x else {})} for k in ["a", "b", "c", "", "ab", "abcd", 3] for x in (0, 1)]
        + [{}, {"x": 1}]),
    "dependent_schemas_value_sets": (
        {"type": "object", "properties": {"type": {"type": "string"}, "format": {"type": "string"}},
         "dependentSchemas": {"format": {"oneOf": [
             {"properties": {"type": {"enum": ["integer"]}, "format": {"enum": ["int32", "int64"]}}},
             {"properties": {"type": {"enum": ["number"]}, "format": {"enum": ["float", "double"]}}}]}}},
        [{**({"type": t} if t else {}), **({"format": f} if f else {})} for t in [None, "integer", "number", "s"]
         for f in [None, "int32", "float", "x"]]),
    "if_on_boolean_and_null": (
        {"properties": {"on": {"type": ["boolean", "null"]}, "level": {"type": "integer"}},
         "if": {"properties": {"on": {"const": True}}, "required": ["on"]}, "then": {"required": ["level"]},
         "else": {"properties": {"level": False}}},
        [{**({"on": o} if o != "-" else {}), **({"level": 1} if lv else {})} for o in [True, False, None, "-"]
         for lv in (0, 1)] + ["x", 2]),
}


@pytest.mark.parametrize("name", sorted(DISCRIMINATED))
def test_value_conditions_split_the_tested_value(name):
    schema, values = DISCRIMINATED[name]
    g = SchemaGrammar(schema)
    accepted = sum(g.check(v) for v in values)
    assert 0 < accepted < len(values)


def test_other_spellings_of_a_tested_value_stay_sound():
    g = SchemaGrammar(DISCRIMINATED["if_enum_on_free_string"][0])
    # "\u0061" is "a": it is never taken for a value outside the set (the then-branch would be skipped)
    assert not g.accepts('{"kind":"\\u0061"}')
    assert g.accepts('{"kind":"\\u0063"}')


def test_value_conditions_beyond_the_object_walk_are_refused_by_pointer():
    # a value condition the object walk cannot split goes the union way (test_conditionals.py), whose
    # refusal names the conditional
    with pytest.raises(UnsupportedSchemaFeature) as err:
        json_schema_to_lark({"type": "object", "dependentSchemas": {"a~b": {"properties": {"c": {"not": {"format": "email"}}}}}})
    assert err.value.pointer == "/dependentSchemas/a~0b"
    with pytest.raises(UnsupportedSchemaFeature) as err:
        json_schema_to_lark({"properties": {"x": {"if": {"properties": {"a": {"format": "email"}}}, "then": {"required": ["b"]}}}})
    assert err.value.pointer == "/properties/x/if"


def test_too_many_condition_states_are_refused_by_pointer():
    keys = [f"k{i}" for i in range(40)]
    # each of the first 20 keys needs a later one: every subset of them is remembered (2^20 states)
    schema = {"type": "object", "properties": {k: {} for k in keys},
              "dependentRequired": {keys[i]: [keys[39 - i]] for i in range(20)}}
    with pytest.raises(UnsupportedSchemaFeature) as err:
        json_schema_to_lark({"properties": {"o": schema}})
    assert err.value.pointer == "/properties/o"


def test_unsatisfiable_conditions_leave_no_object():
    g = SchemaGrammar({"properties": {"o": {"type": ["object", "null"], "required": ["a"],
                                            "dependentRequired": {"a": ["b"]}, "properties": {"b": False}}}})
    for value in ({"o": None}, {"o": {"a": 1}}, {"o": {"a": 1, "b": 1}}, {"o": {}}):
        g.check(value)
    g2 = SchemaGrammar({"anyOf": [{"type": "string"}, {"type": "object", "required": ["a"], "maxProperties": 0}]})
    for value in ("x", {}, {"a": 1}):
        g2.check(value)

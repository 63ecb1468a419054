"""allOf of objects with patternProperties on one side or both (merged exactly, or refused by pointer): every
object over a small key pool, in every key order, judged by jsonschema."""
from __future__ import annotations

import itertools

import pytest

from lightllm_struct.grammar.errors import UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema import json_schema_to_lark
from tests.grammar.json_schema.helpers import SchemaGrammar, compact

INT, STR = {"type": "integer"}, {"type": "string"}

CASES = {
    # the other side declares a key one of the patterns matches; its additionalProperties is true
    "declared_key_matches": ({"allOf": [{"patternProperties": {"^x": INT}, "additionalProperties": STR},
                                        {"properties": {"a": {}, "xb": {"minimum": 3}}}]}, ["a", "xb", "xc", "q"]),
    # a key only one side declares meets the other side's patterns, else its additionalProperties (false)
    "closed_pattern_side": ({"allOf": [{"properties": {"a": INT}},
                                       {"patternProperties": {"^x": INT}, "additionalProperties": False}]},
                            ["a", "x1", "q"]),
    # the other side's additionalProperties joins each pattern
    "open_side_joins_patterns": ({"allOf": [{"patternProperties": {"^x": INT}},
                                            {"properties": {"a": STR},
                                             "additionalProperties": {"type": ["boolean", "integer"]}}]},
                                 ["a", "x1", "q"]),
    # one pattern on both sides, different properties (what $ref of a shared trait produces)
    "same_patterns": ({"allOf": [{"properties": {"a": INT}, "patternProperties": {"^x": STR},
                                  "additionalProperties": False},
                                 {"properties": {"b": INT}, "patternProperties": {"^x": STR},
                                  "additionalProperties": False}]}, ["a", "b", "x1", "q"]),
    # both open: the union of the patterns
    "two_open_pattern_sets": ({"allOf": [{"patternProperties": {"^x": INT}, "properties": {"y": {}}},
                                         {"patternProperties": {"1$": {"minimum": 2}}}]}, ["y", "x1", "x2", "z1", "q"]),
}
VALUES = [1, 5, "s"]
MAX_KEYS = 3


def _objects(keys: list[str]):
    for n in range(min(len(keys), MAX_KEYS) + 1):
        for chosen in itertools.combinations(keys, n):
            for values in itertools.product(VALUES, repeat=n):
                yield dict(zip(chosen, values))


@pytest.mark.parametrize("name", sorted(CASES))
def test_merged_pattern_properties_are_exact(name):
    schema, keys = CASES[name]
    g = SchemaGrammar(schema)
    valid = 0
    for value in _objects(keys):
        orders = [dict(p) for p in itertools.permutations(value.items())]
        accepted = [o for o in orders if g.accepts(compact(o))]
        assert all(g.validator.is_valid(o) for o in accepted), accepted  # sound
        assert bool(accepted) == g.validator.is_valid(value), value  # complete (in some key order)
        valid += bool(accepted)
    assert valid > 1


@pytest.mark.parametrize("schema", [
    # a key matching "a" but not "^b" must satisfy the second side's additionalProperties: no one form
    {"allOf": [{"patternProperties": {"a": INT}}, {"patternProperties": {"^b": True}, "additionalProperties": False}]},
    # "x1" is declared by the side whose additionalProperties would join the pattern: it asks its own schema
    {"allOf": [{"patternProperties": {"^x": INT}}, {"properties": {"x1": {}}, "additionalProperties": STR}]},
])
def test_unmergeable_patterns_are_refused_by_pointer(schema):
    with pytest.raises(UnsupportedSchemaFeature) as err:
        json_schema_to_lark(schema)
    assert err.value.pointer.endswith("/patternProperties")

"""contains/minContains/maxContains counted in the grammar: every small array agrees with jsonschema; what
cannot be split exactly into matching and non-matching items is refused by pointer."""
from __future__ import annotations

import itertools

import pytest

from lightllm_struct.grammar.errors import UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema import json_schema_to_lark
from tests.grammar.json_schema.helpers import SchemaGrammar

VALUES = [1, 2, "a", None, True, [1], {"a": 1}, 7.5]
SCHEMAS = {
    "by_type": {"type": "array", "contains": {"type": "string"}},
    "counted_types": {"type": "array", "contains": {"type": ["null", "boolean"]}, "minContains": 2,
                      "maxContains": 3},
    "finite_items": {"type": "array", "items": {"enum": [1, 2, "a", None]}, "contains": {"const": 1},
                     "maxContains": 1},
    "finite_items_min": {"type": "array", "items": {"enum": [1, 2, "a"]}, "contains": {"minimum": 2},
                         "minContains": 2, "maxItems": 3},
    "true_counts_items": {"contains": True, "minContains": 2, "maxContains": 2},
    "optional": {"contains": {"type": "null"}, "maxItems": 2, "minContains": 0, "maxContains": 1},
    "prefix": {"prefixItems": [{"type": "string"}], "contains": {"type": "string"}, "minContains": 2},
    "false_vacuous": {"contains": False, "minContains": 0},
    "merged_same": {"allOf": [{"contains": {"type": "string"}}, {"contains": {"type": "string"}, "maxContains": 1}]},
    "merged_vacuous": {"allOf": [{"contains": {"type": "string"}}, {"contains": {"type": "string"},
                                                                     "minContains": 0}]},
    "stray_min": {"allOf": [{"contains": {"type": "string"}}, {"minContains": 0}]},
    "negated_bound": {"contains": {"minimum": 5}, "maxContains": 1},  # N through the converter's not
    "draft7": {"$schema": "http://json-schema.org/draft-07/schema#", "contains": {"type": "null"},
               "minContains": 3},
}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_small_array_agrees_with_jsonschema(name):
    g = SchemaGrammar(SCHEMAS[name])
    accepted = sum(g.check(list(arr)) for n in range(5) for arr in itertools.product(VALUES, repeat=n))
    assert accepted > 0


def test_impossible_counts_accept_nothing():
    for schema in ({"contains": False}, {"contains": {"type": "null"}, "minContains": 3, "maxItems": 2},
                   {"contains": True, "minContains": 2, "maxContains": 1}):
        with pytest.raises(UnsupportedSchemaFeature, match="no instance"):
            json_schema_to_lark({"type": "array", **schema})


@pytest.mark.parametrize("schema, pointer", [
    ({"items": {"type": "integer"}, "contains": {"type": "integer"}, "uniqueItems": True}, "/uniqueItems"),
    ({"allOf": [{"contains": {"type": "string"}}, {"contains": {"type": "null"}}]}, "/contains"),
])
def test_refused_by_pointer(schema, pointer):
    with pytest.raises(UnsupportedSchemaFeature) as info:
        json_schema_to_lark({"type": "array", **schema})
    assert info.value.pointer == pointer


def test_long_arrays_keep_a_flat_stack():
    # left-recursive counting: 300 items parse (a right-recursive chain would nest 300 deep)
    g = SchemaGrammar({"type": "array", "contains": {"type": "string"}, "maxContains": 2})
    assert g.check([1] * 150 + ["a"] + [None] * 150)
    assert not g.check(["a"] * 3 + [1] * 10)

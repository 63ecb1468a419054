"""``anyOf`` whose plain union one LALR(1) table cannot decide, compiled as disjoint alternatives (B1, B2 ∧ ¬B1,
...; exclusive.first_match_branches), and ``multipleOf`` merged as the least common multiple: each grammar
checked against ``jsonschema`` on a pool of values in both directions (keys in every order)."""
from __future__ import annotations

import itertools

import pytest

from lightllm_struct.grammar.errors import UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema import json_schema_to_lark
from lightllm_struct.grammar.json_schema.combinators import _lcm
from tests.grammar.json_schema.helpers import SchemaGrammar
from tests.grammar.json_schema.test_conditionals import _check

_SCALARS = [None, True, -3, 0, 1, 1.5, 2, 2.5, 3, 4, 4.5, 6, 7.5, 9, 12, 18, 30, 0.75, 2.25, "", "a", "ab", "abc"]


def _pool():
    yield from _SCALARS
    yield from ([], [1], [3], [1, 3], [6, 9], ["a"], [1, "a"], [2, 4, 6], [[]])
    for n in range(3):
        for keys in itertools.combinations(["foo", "bar", "baz"], n):
            for values in itertools.product([1, "s", 2.5], repeat=n):
                yield dict(zip(keys, values))


CASES = {
    "integer_or_minimum": {"anyOf": [{"type": "integer"}, {"minimum": 2}]},
    "number_or_anything": {"anyOf": [{"type": "number"}, {}]},
    "objects_overlapping": {"anyOf": [{"properties": {"bar": {"type": "integer"}}, "required": ["bar"]},
                                      {"properties": {"foo": {"type": "string"}}, "required": ["foo"]}]},
    "arrays_overlapping": {"anyOf": [{"type": "array", "items": {"type": "integer"}, "maxItems": 3},
                                     {"type": "array", "maxItems": 1}, {"type": "string", "maxLength": 1}]},
    "nested": {"type": "object", "properties": {"foo": {"anyOf": [{"type": "integer", "maximum": 3},
                                                                 {"type": "number", "minimum": 2}]}}},
    "multiple_of_integers": {"allOf": [{"multipleOf": 2}, {"multipleOf": 3}]},
    "multiple_of_decimals": {"type": "number", "maximum": 30, "allOf": [{"multipleOf": 0.75}, {"multipleOf": 0.5}]},
    "all_any_one_of_multiples": {"allOf": [{"multipleOf": 2}], "anyOf": [{"multipleOf": 3}], "oneOf": [{"multipleOf": 5}]},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_exact_against_jsonschema(name):
    g = SchemaGrammar(CASES[name])
    results = [_check(g, value) for value in _pool()]
    assert any(results) and (not all(results) or name == "number_or_anything")


def test_least_common_multiples():
    assert (_lcm(2, 3), _lcm(4, 6), _lcm(0.1, 0.25), _lcm(1.5, 2), _lcm(0.01, 0.0001)) == (6, 12, 0.5, 6, 0.01)
    assert _lcm(True, 2) is None and _lcm(-1, 2) is None and _lcm("2", 3) is None


def test_an_any_of_without_an_exact_disjoint_form_stays_refused():
    # the disjoint form needs ¬format (no regex here): the plain union's refusal is kept
    with pytest.raises(UnsupportedSchemaFeature) as err:
        json_schema_to_lark({"anyOf": [{"type": "string", "format": "email"},
                                       {"type": "object", "properties": {"a": {}}}, {"minimum": 2}]})
    assert "LALR" in str(err.value)

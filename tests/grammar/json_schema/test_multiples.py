"""multipleOf (divisibility automata) and minProperties: 1, judged by jsonschema."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest

from lightllm_struct.grammar.json_schema.fsm_regex import to_regex
from lightllm_struct.grammar.json_schema.multiples import multiple_fsm, step_parts
from tests.grammar.json_schema.helpers import SchemaGrammar

NUMBERS = ["0", "3", "6", "7", "-21", "14", "0.5", "1.5", "3.0", "4.50", "0.01", "0.011", "12.34", "100", "1.25",
           "2.5", "-0.0", "24", "56", "0.75", "-4.5", "1000000007"]


@pytest.mark.parametrize("step", [3, 7, 8, 2, 1.5, 0.01, 0.5, 10, 0.25])
def test_divisibility_automaton_is_exact(step):
    regex = to_regex(multiple_fsm(*step_parts(step)))
    for text in NUMBERS:
        want = Decimal(text) % Decimal(repr(step)) == 0
        assert bool(re.fullmatch(regex, text)) == want, (step, text)


@pytest.mark.parametrize("schema", [
    {"type": "integer", "multipleOf": 7, "minimum": 0, "maximum": 100},
    {"type": "number", "multipleOf": 0.01},
    {"type": "integer", "multipleOf": 1.5},
    {"type": "number", "multipleOf": 5, "exclusiveMinimum": 0},
])
def test_multiple_of_with_bounds(schema):
    g = SchemaGrammar(schema)
    for value in (0, 7, 14, 98, 105, -7, 3, 0.01, 1.25, 1.255, 4.5, 5, 10, -5, 1.5, 6):
        g.check(value)


@pytest.mark.parametrize("schema", [
    {"type": "object", "minProperties": 1},
    {"type": "object", "properties": {"a": {}, "b": {}}, "minProperties": 1, "additionalProperties": False},
    {"type": "object", "properties": {"a": {}}, "minProperties": 1},
])
def test_min_properties_one_forbids_the_empty_object(schema):
    g = SchemaGrammar(schema)
    for value in ({}, {"a": 1}, {"b": 2}, {"a": 1, "b": 2}, {"c": 3}):
        g.check(value)

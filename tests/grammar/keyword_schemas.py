"""Schemas of the keywords issue 18 added (pattern properties, divisibility, pattern with lengths, key names,
property counts, uniqueItems over finite item domains), shared by the soundness walks and the completeness tests."""
from __future__ import annotations

KEYWORD_SCHEMAS = {
    "pattern_properties": {"type": "object", "properties": {"id": {"type": "integer"}},
                           "patternProperties": {"^x_": {"type": "string", "maxLength": 3}},
                           "additionalProperties": {"type": "boolean"}},
    "multiple_of": {"type": "array", "items": {"type": "integer", "multipleOf": 7, "minimum": -50, "maximum": 200},
                    "maxItems": 4},
    "decimal_step": {"type": "number", "multipleOf": 0.25, "minimum": 0, "maximum": 10},
    "pattern_and_length": {"type": "string", "pattern": "[0-9]", "minLength": 2, "maxLength": 6},
    "property_names": {"type": "object", "propertyNames": {"maxLength": 2}, "additionalProperties": {"type": "null"}},
    "min_properties": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "null"}},
                       "minProperties": 1, "additionalProperties": False},
    "dependent_required": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"},
                                                            "c": {"type": "null"}},
                           "dependentRequired": {"a": ["c"], "c": ["b"]}, "additionalProperties": False},
    "presence_conditions": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "null"},
                                                             "c": {"type": "boolean"}},
                            "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
                            "if": {"required": ["c"]}, "then": {"required": ["b"]}, "maxProperties": 2,
                            "additionalProperties": {"type": "integer", "maximum": 9}},
    "unique_enum": {"type": "array", "items": {"enum": ["a", "b", 1, True, None]}, "uniqueItems": True,
                    "maxItems": 4},
    "unique_tuple": {"type": "array", "prefixItems": [{"type": "boolean"}, {"type": "boolean"}],
                     "items": {"enum": [1, 2, False]}, "uniqueItems": True},
}

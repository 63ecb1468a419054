"""response_format json_schema end to end: >= 10 varied schemas, chat and completions, temperature 0 and 1,
every answer validated by ``jsonschema`` (an independent validator), every time."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import pytest

POINT = {"type": "object", "properties": {"x": {"type": "integer", "minimum": -9, "maximum": 9},
                                          "y": {"type": "integer", "minimum": -9, "maximum": 9}},
         "required": ["x", "y"], "additionalProperties": False}

SCHEMAS = {
    "nested_object": {"type": "object", "properties": {"user": {
        "type": "object", "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 10},
                                         "age": {"type": "integer", "minimum": 0, "maximum": 120}},
        "required": ["name", "age"], "additionalProperties": False}},
        "required": ["user"], "additionalProperties": False},
    "bounded_array": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 9},
                      "minItems": 2, "maxItems": 4},
    "enums": {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]},
                                               "size": {"enum": ["S", "M", "L", 42]}},
              "required": ["color", "size"], "additionalProperties": False},
    "any_of": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 100},
                         {"type": "string", "maxLength": 8}, {"type": "boolean"}]},
    "refs": {"$defs": {"point": POINT}, "type": "object",
             "properties": {"a": {"$ref": "#/$defs/point"}, "b": {"$ref": "#/$defs/point"}},
             "required": ["a", "b"], "additionalProperties": False},
    "formats": {"type": "object", "properties": {"day": {"type": "string", "format": "date"},
                                                 "id": {"type": "string", "format": "uuid"},
                                                 "ip": {"type": "string", "format": "ipv4"}},
                "required": ["day", "id", "ip"], "additionalProperties": False},
    "integer_ranges": {"type": "object", "properties": {
        "year": {"type": "integer", "minimum": 1900, "maximum": 2100},
        "delta": {"type": "integer", "minimum": -50, "maximum": -10},
        "pct": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 100}},
        "required": ["year", "delta", "pct"], "additionalProperties": False},
    "const_bool_null": {"type": "object", "properties": {"kind": {"const": "event"}, "done": {"type": "boolean"},
                                                         "note": {"type": "null"}},
                        "required": ["kind", "done", "note"], "additionalProperties": False},
    "array_of_objects": {"type": "array", "minItems": 1, "maxItems": 2, "items": {
        "type": "object", "properties": {"sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
                                         "qty": {"type": "integer", "minimum": 1, "maximum": 5}},
        "required": ["sku", "qty"], "additionalProperties": False}},
    "optional_props": {"type": "object", "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 8},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3}},
        "required": ["title"], "additionalProperties": False},
    "nullable_union": {"type": "object", "properties": {"v": {"type": ["string", "null"], "maxLength": 6},
                                                        "w": {"type": ["integer", "boolean"], "minimum": 0,
                                                              "maximum": 9}},
                       "required": ["v", "w"], "additionalProperties": False},
}
MAX_TOKENS = 96
CASES = [(name, endpoint, temp) for name in SCHEMAS for endpoint in ("chat", "completions") for temp in (0.0, 1.0)]


def _ask(client, model: str, name: str, endpoint: str, temp: float):
    schema = SCHEMAS[name]
    rf = {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
    instruction = f"Give an example JSON value for this JSON schema: {json.dumps(schema)}"
    if endpoint == "chat":
        r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": instruction}],
                                           max_tokens=MAX_TOKENS, temperature=temp, seed=7, response_format=rf)
        return r.choices[0].message.content, r.choices[0].finish_reason
    r = client.completions.create(model=model, prompt=instruction + "\nJSON:", max_tokens=MAX_TOKENS,
                                  temperature=temp, seed=7, extra_body={"response_format": rf})
    return r.choices[0].text, r.choices[0].finish_reason


@pytest.fixture(scope="module")
def answers(server, openai_client):
    """All cases at once: the engine batches them, which is also the realistic load."""
    with ThreadPoolExecutor(16) as pool:
        results = pool.map(lambda c: _ask(openai_client, server.model, *c), CASES)
        return dict(zip(CASES, results))


def test_at_least_ten_schemas():
    assert len(SCHEMAS) >= 10


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-t{c[2]:g}")
def test_output_validates(answers, case):
    text, finish_reason = answers[case]
    assert finish_reason == "stop", f"did not finish within {MAX_TOKENS} tokens: {text!r}"
    jsonschema.validate(json.loads(text), SCHEMAS[case[0]], format_checker=jsonschema.FormatChecker())

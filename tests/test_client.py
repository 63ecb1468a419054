"""The client's request building and result parsing (the end-to-end paths are in tests/server/test_e2e_*)."""
from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from lightllm_struct.client import IncompleteOutputError, OutputParseError, build_call, parse_output
from lightllm_struct.errors import InvalidRequestError
from lightllm_struct.request import Constraint


class City(BaseModel):
    name: str
    population: int


def test_pydantic_schema_becomes_response_format_and_parses_to_an_instance():
    call = build_call("hi", schema=City, sampling={"max_tokens": 8})
    rf = call.body["response_format"]
    expected = {**City.model_json_schema(), "additionalProperties": False}
    assert rf["type"] == "json_schema" and rf["json_schema"]["schema"] == expected
    assert call.body["max_tokens"] == 8 and call.messages == [{"role": "user", "content": "hi"}]
    assert parse_output(call, '{"name":"Oslo","population":5}', "stop") == City(name="Oslo", population=5)


def test_dict_and_string_schemas_parse_to_json():
    schema = {"type": "array", "items": {"type": "integer"}}
    for given in (schema, json.dumps(schema)):
        call = build_call([{"role": "user", "content": "x"}], schema=given, sampling={})
        assert call.constraint == Constraint("json_schema", schema)
        assert parse_output(call, "[1,2]", "stop") == [1, 2]


@pytest.mark.parametrize("kw,field,kind", [({"regex": "a+"}, "regex", "regex"), ({"grammar": "start: \"a\""},
                                            "grammar", "lark"), ({"choices": ["x", "y"]}, "choice", "choice")])
def test_other_constraints_use_structured_outputs(kw, field, kind):
    call = build_call("p", sampling={}, **kw)
    assert field in call.body["structured_outputs"] and call.constraint.kind == kind
    assert parse_output(call, "text", "stop") == "text"


def test_bad_arguments_raise_before_any_call():
    with pytest.raises(InvalidRequestError):
        build_call("p", schema={}, regex="a", sampling={})
    with pytest.raises(InvalidRequestError):
        build_call("p", schema="{not json", sampling={})
    with pytest.raises(InvalidRequestError):
        build_call("p", sampling={"temprature": 1})
    with pytest.raises(InvalidRequestError):
        build_call("p", schema=3, sampling={})


def test_cut_off_or_unparsable_output_raises_typed_errors():
    call = build_call("p", schema=City, sampling={})
    with pytest.raises(IncompleteOutputError) as err:
        parse_output(call, '{"name":"Os', "length")
    assert err.value.text == '{"name":"Os'
    with pytest.raises(OutputParseError):
        parse_output(call, '{"name":"Oslo"}', "stop")

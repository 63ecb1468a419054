"""The tool-call grammar, checked with lark's own LALR parser as the independent judge."""
from __future__ import annotations

import lark
import pytest

from lightllm_struct.errors import InvalidRequestError
from lightllm_struct.server.protocol import ChatCompletionRequest, ChatMessage, NamedToolChoice
from lightllm_struct.server.tools import prefix_lark_names, prepare_messages, render_tool_call_text, tool_call_grammar

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 8}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "add", "parameters": {
        "$defs": {"n": {"type": "integer", "minimum": 0, "maximum": 9}}, "type": "object",
        "properties": {"a": {"$ref": "#/$defs/n"}, "b": {"$ref": "#/$defs/n"}},
        "required": ["a", "b"], "additionalProperties": False}}},
]
WEATHER = '<tool_call>{"name":"get_weather","arguments":{"city":"Oslo","unit":"c"}}</tool_call>'
ADD = '<tool_call>{"name":"add","arguments":{"a":1,"b":2}}</tool_call>'


def _parser(choice, parallel=True):
    req = ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "x"}], "tools": TOOLS})
    if isinstance(choice, dict):
        choice = NamedToolChoice.model_validate(choice)
    return lark.Lark(tool_call_grammar(req.tools, choice, parallel=parallel), parser="lalr")


def _accepts(parser, text: str) -> bool:
    try:
        parser.parse(text)
        return True
    except lark.exceptions.LarkError:
        return False


def test_required_accepts_valid_calls_only():
    p = _parser("required")
    assert _accepts(p, WEATHER) and _accepts(p, ADD) and _accepts(p, WEATHER + ADD)
    for bad in ["hello", "", WEATHER.replace("Oslo", "Amsterdam!"), ADD.replace("2", "12"),
                ADD.replace('"add"', '"sub"'), WEATHER[:-3]]:
        assert not _accepts(p, bad), bad


def test_parallel_off_allows_one_call_and_named_allows_one_tool():
    assert not _accepts(_parser("required", parallel=False), WEATHER + ADD)
    named = _parser({"type": "function", "function": {"name": "add"}})
    assert _accepts(named, ADD) and not _accepts(named, WEATHER)


def test_auto_allows_text_that_does_not_start_like_a_call():
    p = _parser("auto")
    assert _accepts(p, "It is sunny <b>today</b>.") and _accepts(p, WEATHER) and _accepts(p, "")
    assert not _accepts(p, "<tool_call>oops")


def test_bad_parameters_schema_names_the_tool():
    req = ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "x"}], "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object",
                                                                      "properties": {"a": {"type": "nope"}}}}}]})
    with pytest.raises(InvalidRequestError) as err:
        tool_call_grammar(req.tools, "required")
    assert err.value.param == "tools[0].function.parameters" and "/properties/a" in err.value.message


def test_prefixing_renames_names_but_not_literals():
    text = 'start: a B\na: "start" /B+/ _c\n_c: "x"\nB: "B"\n%ignore B\n'
    out = prefix_lark_names(text, "p_")
    assert out == 'p_start: p_a P_B\np_a: "start" /B+/ _p_c\n_p_c: "x"\nP_B: "B"\n%ignore P_B\n'


def test_tools_go_into_the_system_turn_and_past_calls_into_the_text():
    req = ChatCompletionRequest.model_validate({"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather",
                                                          "arguments": '{"city": "Oslo", "unit": "c"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "5 C"}], "tools": TOOLS})
    msgs = prepare_messages(req.messages, req.tools, "auto")
    assert msgs[0]["role"] == "system" and msgs[0]["content"].startswith("Be brief.")
    assert '"name": "get_weather"' in msgs[0]["content"]
    assert msgs[2]["content"] == WEATHER and msgs[3] == {"role": "tool", "content": "5 C"}
    assert render_tool_call_text("add", "not json") == '<tool_call>{"name":"add","arguments":not json}</tool_call>'
    assert prepare_messages([ChatMessage(role="user", content="x")], req.tools, "none") == [
        {"role": "user", "content": "x"}]

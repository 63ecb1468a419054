"""The tool-call parser: streamed pieces always reassemble to the one-shot parse."""
from __future__ import annotations

import json

import pytest

from lightllm_struct.server.tool_parser import ToolCallParser, parse_tool_output

CALL_A = '<tool_call>{"name":"get_weather","arguments":{"city":"Paris","days":[1,2]}}</tool_call>'
CALL_B = '<tool_call>{"name":"search","arguments":{"q":"a}</tool_call>b"}}</tool_call>'


def _stream(text: str, step: int) -> tuple[str, dict[int, dict]]:
    parser, content, calls = ToolCallParser(), "", {}
    cuts = list(range(step, len(text), step)) + [len(text)]
    for i, cut in enumerate(cuts):
        delta = parser.feed(text[:cut], final=i == len(cuts) - 1)
        content += delta.content
        for piece in delta.calls:
            call = calls.setdefault(piece.index, {"id": None, "name": None, "arguments": ""})
            if piece.id:
                assert call["id"] is None, "a call's head is sent once"
                call.update(id=piece.id, name=piece.name)
            call["arguments"] += piece.arguments
    return content, calls


def test_single_call_parses_to_name_and_raw_arguments():
    content, calls = parse_tool_output(CALL_A)
    assert content is None
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Paris", "days": [1, 2]})]


def test_closing_tag_inside_a_string_argument_does_not_end_the_call():
    _, calls = parse_tool_output(CALL_A + CALL_B)
    assert [c.name for c in calls] == ["get_weather", "search"]
    assert json.loads(calls[1].arguments) == {"q": "a}</tool_call>b"}


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_streaming_reassembles_to_the_one_shot_parse(step):
    text = CALL_A + CALL_B
    content, calls = _stream(text, step)
    _, expected = parse_tool_output(text)
    assert content == ""
    assert [(c["name"], c["arguments"]) for c in calls.values()] == [(c.name, c.arguments) for c in expected]


@pytest.mark.parametrize("text", ["Hello there", "<b>bold</b>", "<tool", ""])
def test_plain_text_is_content(text):
    content, calls = parse_tool_output(text)
    assert calls == [] and content == (text or None)
    streamed, _ = _stream(text, 1) if text else ("", {})
    assert streamed == text


def test_cut_off_call_keeps_partial_arguments_and_is_the_same_streamed():
    text = CALL_A[:-20]
    _, calls = parse_tool_output(text)
    assert len(calls) == 1 and calls[0].arguments == text.split('"arguments":', 1)[1]
    _, streamed = _stream(text, 3)
    assert streamed[0]["arguments"] == calls[0].arguments


def test_text_only_parser_never_looks_for_calls():
    parser = ToolCallParser(text_only=True)
    assert parser.feed(CALL_A, final=True).content == CALL_A

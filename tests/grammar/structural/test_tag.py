"""vLLM's structural_tag (both of xgrammar's spellings) as turn grammars, judged by lark's LALR parser."""
from __future__ import annotations

import lark
import pytest

from lightllm_struct.grammar.errors import GrammarSyntaxError, UnsupportedSchemaFeature
from lightllm_struct.grammar.structural import turn_grammar
from lightllm_struct.grammar.structural.tag import structural_tag_spec

ADD = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": False}
LEGACY = {"type": "structural_tag", "triggers": ["<function="],
          "structures": [{"begin": "<function=add>", "schema": ADD, "end": "</function>"},
                         {"begin": "<function=now>", "schema": {"type": "object", "properties": {},
                                                                "additionalProperties": False}, "end": "</function>"}]}
TAGS = {"type": "structural_tag", "format": {
    "type": "triggered_tags", "triggers": ["<function="], "at_least_one": True,
    "tags": [{"begin": "<function=add>", "content": {"type": "json_schema", "json_schema": ADD},
              "end": "</function>"}]}}


def _accepts(tag, text: str) -> bool:
    try:
        lark.Lark(turn_grammar(structural_tag_spec(tag)).lark, parser="lalr").parse(text)
        return True
    except lark.exceptions.LarkError:
        return False


def test_legacy_tag_interleaves_text_and_structures():
    assert _accepts(LEGACY, "Sure. <function=add>{\"a\": 1}</function> and <function=now>{}</function> done <b>")
    assert _accepts(LEGACY, "<p>no call at all") and _accepts(LEGACY, "")
    assert not _accepts(LEGACY, "<function=add>{\"a\": \"x\"}</function>")
    assert not _accepts(LEGACY, "<function=sub>{\"a\": 1}</function>")  # the trigger commits to a structure
    assert _accepts(json_text := __import__("json").dumps(LEGACY), "<function=add>{\"a\":2}</function>")
    assert json_text


def test_triggered_tags_with_at_least_one_are_calls_only():
    assert _accepts(TAGS, "<function=add>{\"a\": 1}</function><function=add>{\"a\": 2}</function>")
    assert not _accepts(TAGS, "text first") and not _accepts(TAGS, "")
    first = {"type": "structural_tag", "format": {**TAGS["format"], "at_least_one": False, "stop_after_first": True}}
    assert _accepts(first, "hi <function=add>{\"a\": 1}</function>")
    assert not _accepts(first, "hi <function=add>{\"a\": 1}</function> more")


@pytest.mark.parametrize("tag,error", [
    ({"type": "structural_tag", "triggers": [], "structures": []}, GrammarSyntaxError),
    ({"type": "structural_tag", "triggers": ["<f"], "structures": [{"begin": "<g>", "end": "</g>"}]},
     GrammarSyntaxError),
    ({"type": "structural_tag", "format": {"type": "sequence"}}, UnsupportedSchemaFeature),
    ({"type": "structural_tag", "format": {"type": "triggered_tags", "triggers": ["<f"],
                                           "tags": [{"begin": "<f>", "content": {"type": "regex"}, "end": "x"}]}},
     UnsupportedSchemaFeature),
    ("{not json", GrammarSyntaxError),
])
def test_malformed_tags_are_typed_errors(tag, error):
    with pytest.raises(error):
        turn_grammar(structural_tag_spec(tag))


def test_the_server_blames_the_request_field():
    from lightllm_struct.errors import InvalidRequestError
    from lightllm_struct.server.constraints import constraint_of
    from lightllm_struct.server.protocol import CompletionRequest

    req = CompletionRequest.model_validate({"prompt": "x", "structured_outputs": {"structural_tag": {
        "type": "structural_tag", "triggers": ["<f"], "structures": [{"begin": "<g>", "end": "</g>"}]}}})
    with pytest.raises(InvalidRequestError) as err:
        constraint_of(req)
    assert err.value.param == "structured_outputs.structural_tag" and "opens no structure" in err.value.message
    ok = CompletionRequest.model_validate({"prompt": "x", "structured_outputs": {"structural_tag": LEGACY}})
    assert constraint_of(ok).constraint.kind == "lark"

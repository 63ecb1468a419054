"""Prompts of tool turns: the model's own template renders tools and past calls, our prompt only without one."""
from __future__ import annotations

import lark
import pytest

from lightllm_struct.engine.tokenizer import Tokenizer
from lightllm_struct.errors import InvalidRequestError
from lightllm_struct.server.protocol import ChatCompletionRequest
from lightllm_struct.server.tools import ChatFormat, tool_call_grammar
from tests.server.chat_models import default_tokenizer_dir, write_tokenizer

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 8}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "add", "parameters": {
        "$defs": {"n": {"type": "integer", "minimum": 0, "maximum": 9}}, "type": "object",
        "properties": {"a": {"$ref": "#/$defs/n"}, "b": {"$ref": "#/$defs/n"}},
        "required": ["a", "b"], "additionalProperties": False}}},
]
HISTORY = [
    {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "abcDEF123", "type": "function", "function": {"name": "get_weather",
                                                             "arguments": '{"city": "Oslo", "unit": "c"}'}}]},
    {"role": "tool", "tool_call_id": "abcDEF123", "content": "5 C"}]


def _req(**kw) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"messages": HISTORY, "tools": TOOLS, **kw})


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    made = {name: Tokenizer(write_tokenizer(tmp_path_factory.mktemp(name), name))
            for name in ("qwen2_5", "llama3_1", "mistral_v3")}
    return {**made, None: Tokenizer(default_tokenizer_dir())}


def test_native_template_renders_tools_calls_and_results(tokenizers):
    chat = ChatFormat.of(tokenizers["qwen2_5"])
    assert chat.native_tools and chat.fmt.name == "hermes"
    prompt = chat.render(_req())
    assert '"name": "get_weather"' in prompt.split("</tools>\n\nFor each")[0]  # the template's own tools section
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "c"}}\n</tool_call>' in prompt
    assert "<tool_response>\n5 C\n</tool_response>" in prompt and prompt.endswith("<|im_start|>assistant\n")
    assert "function calling AI model" not in prompt  # not our prompt
    llama = ChatFormat.of(tokenizers["llama3_1"]).render(_req())
    assert '{"name": "get_weather", "parameters": {"city": "Oslo", "unit": "c"}}<|eot_id|>' in llama
    assert "<|start_header_id|>ipython<|end_header_id|>\n\n" in llama
    mistral = ChatFormat.of(tokenizers["mistral_v3"]).render(_req())
    assert '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "c"}, "id": "abcDEF123"}]' \
        in mistral and '"call_id": "abcDEF123"' in mistral


def test_template_without_tools_gets_our_prompt_and_calls_as_text(tokenizers):
    plain = ChatFormat.of(tokenizers[None])  # the default model's template has no tools section
    assert not plain.native_tools and not plain.reasoning and plain.fmt.name == "hermes"
    msgs = plain.messages(_req())
    assert msgs[0]["role"] == "system" and msgs[0]["content"].startswith("Be brief.")
    assert '"name": "get_weather"' in msgs[0]["content"] and "<tool_call>" in msgs[0]["content"]
    assert msgs[2]["content"] == '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "c"}}' \
                                 '\n</tool_call>'
    assert msgs[3] == {"role": "tool", "content": "5 C", "tool_call_id": "abcDEF123"}
    assert plain.messages(_req(tool_choice="none"))[0] == {"role": "system", "content": "Be brief."}


def test_named_choice_and_bad_schema():
    req = _req(tool_choice={"type": "function", "function": {"name": "add"}})
    grammar = lark.Lark(tool_call_grammar(req.tools, req.tool_choice), parser="lalr")
    grammar.parse('<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>')
    with pytest.raises(lark.exceptions.LarkError):
        grammar.parse('<tool_call>\n{"name": "get_weather", "arguments": {"city": "x", "unit": "c"}}\n</tool_call>')
    bad = ChatCompletionRequest.model_validate({"messages": HISTORY, "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object",
                                                                      "properties": {"a": {"type": "nope"}}}}}]})
    with pytest.raises(InvalidRequestError) as err:
        tool_call_grammar(bad.tools, "required")
    assert err.value.param == "tools[0].function.parameters" and "/properties/a" in err.value.message

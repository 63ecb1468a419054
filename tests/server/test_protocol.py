"""Request models: what they accept, and that every bad value is rejected at the edge."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from lightllm_struct.errors import InvalidRequestError
from lightllm_struct.server.protocol import ChatCompletionRequest, CompletionRequest, NamedToolChoice

MSG = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def test_chat_request_accepts_openai_fields_and_ignores_unknown_ones():
    req = ChatCompletionRequest.model_validate({
        "model": "m", "messages": MSG, "max_tokens": 5, "user": "x", "metadata": {"a": 1},
        "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"},
                                                                   "strict": True}}})
    assert req.response_format.json_schema.schema_ == {"type": "object"}
    assert req.effective_tool_choice() == "none"


@pytest.mark.parametrize("patch", [
    {"max_tokens": 0}, {"max_tokens": -3}, {"max_tokens": "5"}, {"max_tokens": 2.5}, {"temperature": "hot"},
    {"temperature": -1}, {"top_p": 0}, {"n": 0}, {"n": 17}, {"best_of": 3}, {"messages": []}, {"messages": "hi"}, {"stream": "yes"},
    {"response_format": {"type": "xml"}}, {"response_format": {"type": "json_schema"}},
    {"structured_outputs": {"regex": "a", "choice": ["a"]}}, {"structured_outputs": {"choice": []}},
    {"presence_penalty": 2.5}, {"frequency_penalty": -3}, {"repetition_penalty": 0}, {"min_p": 1.5},
    {"min_tokens": -1}, {"logit_bias": {"x": 1}}, {"logit_bias": {"5": "up"}}, {"logprobs": "yes"},
    {"top_logprobs": 2}, {"logprobs": True, "top_logprobs": 21}, {"logprobs_mode": "raw"},
])
def test_bad_chat_values_fail_validation(patch):
    with pytest.raises((ValidationError, InvalidRequestError)):
        ChatCompletionRequest.model_validate({"messages": MSG, **patch})


def test_tools_rules():
    with pytest.raises(InvalidRequestError) as err:
        ChatCompletionRequest.model_validate({"messages": MSG, "tools": []})
    assert err.value.param == "tools"
    with pytest.raises(InvalidRequestError) as err:
        ChatCompletionRequest.model_validate({"messages": MSG, "tools": [TOOL],
                                              "tool_choice": {"type": "function", "function": {"name": "g"}}})
    assert err.value.param == "tool_choice" and "'g'" in err.value.message
    req = ChatCompletionRequest.model_validate({"messages": MSG, "tools": [TOOL]})
    assert req.effective_tool_choice() == "auto"
    req = ChatCompletionRequest.model_validate({"messages": MSG, "tools": [TOOL],
                                                "tool_choice": {"type": "function", "function": {"name": "f"}}})
    assert isinstance(req.tool_choice, NamedToolChoice)


def test_completion_prompt_forms():
    assert CompletionRequest.model_validate({"prompt": "a"}).max_tokens == 16
    assert CompletionRequest.model_validate({"prompt": [1, 2, 3]}).prompt == [1, 2, 3]
    assert CompletionRequest.model_validate({"prompt": ["a", "b"]}).prompts() == ["a", "b"]
    assert CompletionRequest.model_validate({"prompt": [[1, 2], [3]]}).prompts() == [[1, 2], [3]]
    with pytest.raises(InvalidRequestError) as err:
        CompletionRequest.model_validate({"prompt": "a", "suffix": "b"})
    assert err.value.param == "suffix"
    with pytest.raises(InvalidRequestError):
        CompletionRequest.model_validate({"prompt": ["a"] * 5, "n": 16})
    with pytest.raises(ValidationError):
        CompletionRequest.model_validate({"prompt": "a", "logprobs": 21})


def test_sampling_fields_reach_sampling_params():
    from lightllm_struct.server.serving import sampling_params

    req = ChatCompletionRequest.model_validate({"messages": MSG, "presence_penalty": 0.5, "frequency_penalty": -1,
                                                "repetition_penalty": 1.2, "logit_bias": {"17": -100},
                                                "min_tokens": 3, "min_p": 0.1, "stop_token_ids": [4]})
    sp = sampling_params(req, max_tokens=8, prompt_len=5, max_model_len=100, prompt_param="messages")
    assert (sp.presence_penalty, sp.frequency_penalty, sp.repetition_penalty, sp.logit_bias, sp.min_tokens,
            sp.min_p, sp.stop_token_ids) == (0.5, -1, 1.2, {17: -100}, 3, 0.1, (4,))
    with pytest.raises(InvalidRequestError) as err:
        sampling_params(req.model_copy(update={"min_tokens": 9}), max_tokens=8, prompt_len=5, max_model_len=100,
                        prompt_param="messages")
    assert err.value.param == "min_tokens"

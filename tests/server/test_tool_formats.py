"""Tool-call formats: chosen from the chat template, overridable, and checked against the template at start-up."""
from __future__ import annotations

import pytest

from lightllm_struct.config import TOOL_CALL_FORMATS, ConfigError, EngineConfig
from lightllm_struct.engine.tokenizer import Tokenizer
from lightllm_struct.server.tool_formats import FORMAT_NAMES, choose_format
from lightllm_struct.server.turns import TurnSupport
from tests.server.chat_models import TEMPLATE_NAMES, default_tokenizer_dir, write_tokenizer

EXPECTED = {"qwen2_5": "hermes", "qwen3": "hermes", "hermes2_pro": "hermes", "llama3_1": "llama3_json",
            "mistral_v3": "mistral"}


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    return {name: Tokenizer(write_tokenizer(tmp_path_factory.mktemp(name), name)) for name in TEMPLATE_NAMES}


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_format_is_read_from_the_template_and_the_template_passes_its_check(tokenizers, name):
    turns = TurnSupport(tokenizers[name])
    assert turns.chat.fmt.name == EXPECTED[name] and turns.chat.native_tools
    assert turns.chat.reasoning == (name == "qwen3")
    turns.check_template()  # the template's own rendering of a call (and reasoning) is in the grammar


@pytest.mark.parametrize("name,wrong", [("qwen2_5", "mistral"), ("llama3_1", "hermes"), ("mistral_v3", "llama3_json")])
def test_a_format_the_template_does_not_write_is_a_start_up_error(tokenizers, name, wrong):
    with pytest.raises(ConfigError) as err:
        TurnSupport(tokenizers[name], tool_call_format=wrong).check_template()
    assert repr(wrong) in err.value.message and err.value.param == "tool_call_format"


def test_default_template_has_no_tools_section_and_names_are_checked():
    turns = TurnSupport(Tokenizer(default_tokenizer_dir()))
    assert not turns.chat.native_tools and turns.chat.fmt.name == "hermes"
    turns.check_template()  # nothing to compare: our own prompt teaches the format
    with pytest.raises(ConfigError):
        choose_format(None, "pythonic")
    with pytest.raises(ConfigError):
        EngineConfig(tool_call_format="pythonic")
    assert TOOL_CALL_FORMATS == FORMAT_NAMES
    assert EngineConfig(tool_call_format="mistral").tool_call_format == "mistral"


def test_qwen3_thinking_switched_off_by_the_template_means_no_reasoning_section(tokenizers):
    turns = TurnSupport(tokenizers["qwen3"])
    from lightllm_struct.server.protocol import ChatCompletionRequest

    req = ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "hi"}],
                                                "chat_template_kwargs": {"enable_thinking": False}})
    prompt = turns.chat.render(req)
    assert prompt.endswith("</think>\n\n") and turns.chat.reasoning_of(prompt, None) is None
    on = turns.chat.render(req.model_copy(update={"chat_template_kwargs": None}))
    assert turns.chat.reasoning_of(on, 5).max_units == 5

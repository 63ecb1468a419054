"""The tool-call formats models are trained on, and which one a chat template speaks.

A format is grammar-level: the text around a call, how its name and arguments are spelled, what separates
parallel calls and which marker opens the calls after free text. ``detect_format`` reads the chat template;
``--tool-call-format`` overrides it. A template without a tools section gets the Hermes format taught by
our own system prompt (``tools.py``).
"""
from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass

from lightllm_struct.config import ConfigError

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_ALNUM = string.ascii_letters + string.digits


def openai_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


def mistral_call_id() -> str:
    """Mistral's templates refuse any call id but nine alphanumeric characters."""
    return "".join(secrets.choice(_ALNUM) for _ in range(9))


@dataclass(frozen=True)
class ToolFormat:
    """How one model family writes tool calls.

    Attributes
    ----------
    name:
        The ``--tool-call-format`` value.
    head:
        The text before a call's arguments, ``{name}`` standing for the JSON-escaped tool name (no quotes).
    tail, tail_regex:
        The text after the arguments; ``tail_regex`` (a regex) where the template writes more than the model
        does (Mistral's ``, "id": "..."``).
    separator, block_open, block_close:
        Between parallel calls, before the first and after the last.
    trigger:
        The marker that switches free text to calls ("auto"); a prefix of ``block_open + head``.
    parallel:
        Whether the template can render several calls in one turn.
    new_id:
        Makes a call id the template accepts back.
    """

    name: str
    head: str
    tail: str
    trigger: str
    separator: str = ""
    block_open: str = ""
    block_close: str = ""
    tail_regex: str | None = None
    parallel: bool = True
    new_id: object = openai_call_id

    def head_of(self, tool_name: str) -> str:
        return self.head.replace("{name}", json.dumps(tool_name)[1:-1])

    def render_call(self, tool_name: str, arguments: str) -> str:
        """One call as the model writes it (our own prompt's examples and history)."""
        return self.head_of(tool_name) + arguments + self.tail


FORMATS = {
    # Hermes 2 Pro, Qwen2.5, Qwen3 (and QwQ): one <tool_call> block per call, JSON with "arguments".
    "hermes": ToolFormat(name="hermes", head='<tool_call>\n{"name": "{name}", "arguments": ',
                         tail="}\n</tool_call>", separator="\n", trigger="<tool_call>"),
    # Llama 3.1 / 3.2 / 3.3 JSON tool calling: the turn is the call, "parameters" for the arguments.
    "llama3_json": ToolFormat(name="llama3_json", head='{"name": "{name}", "parameters": ', tail="}",
                              separator="; ", trigger='{"name": "', parallel=False),
    # Mistral v3 (7B v0.3, Nemo, Small): [TOOL_CALLS] and a JSON list of calls.
    "mistral": ToolFormat(name="mistral", head='{"name": "{name}", "arguments": ', tail="}",
                          tail_regex=r'(?:, "id": "[A-Za-z0-9]{9}")?\}', separator=", ",
                          block_open="[TOOL_CALLS] [", block_close="]", trigger="[TOOL_CALLS]",
                          new_id=mistral_call_id),
}
FORMAT_NAMES = ("auto", *FORMATS)


def detect_format(template: str | None) -> ToolFormat:
    """The format a chat template renders tool calls in; Hermes when it renders none."""
    text = template or ""
    if "[TOOL_CALLS]" in text:
        return FORMATS["mistral"]
    if "<tool_call>" in text:
        return FORMATS["hermes"]
    if "<|python_tag|>" in text or ("<|start_header_id|>" in text and '"parameters"' in text):
        return FORMATS["llama3_json"]
    return FORMATS["hermes"]


def choose_format(template: str | None, override: str = "auto") -> ToolFormat:
    """``override`` unless it is "auto", else the template's format.

    Raises
    ------
    ConfigurationError
        ``override`` names no known format.
    """
    if override == "auto":
        return detect_format(template)
    if override not in FORMATS:
        raise ConfigError(f"unknown tool call format {override!r}; known: {list(FORMAT_NAMES)}",
                                 param="tool_call_format")
    return FORMATS[override]


def template_has_tools(template: str | None) -> bool:
    """Whether the template renders a ``tools`` list itself (else our system prompt describes them)."""
    if not template:
        return False
    from jinja2 import meta
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    try:
        names = meta.find_undeclared_variables(ImmutableSandboxedEnvironment().parse(template))
    except Exception:  # noqa: BLE001 -- a template jinja cannot parse has no usable tools section either
        return False
    return "tools" in names or "custom_tools" in names


def template_has_reasoning(template: str | None) -> bool:
    return THINK_CLOSE in (template or "")

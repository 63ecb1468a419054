"""Tool calling and reasoning for one chat request: the prompt (the model's own template) and the turn grammar.

Tools are rendered by the model's chat template when it has a tools section (``tools=`` as in transformers'
``apply_chat_template``); only a template without one gets our system prompt, which teaches the format the
grammar enforces. The grammar of the turn (``grammar.structural``) follows the model's own tool-call format
and its reasoning section, and ``tool_choice`` decides its mode: "auto" free text or calls, "required" and a
named function calls only, "none" no call.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lightllm_struct.errors import InvalidRequestError
from lightllm_struct.grammar.structural import CallSpec, Reasoning, TurnGrammar, TurnSpec, turn_grammar
from lightllm_struct.server.protocol import ChatCompletionRequest, ChatMessage, NamedToolChoice, Tool
from lightllm_struct.server.tool_formats import (THINK_CLOSE, THINK_OPEN, ToolFormat, choose_format,
                                                 template_has_reasoning, template_has_tools)

_TOOL_PROMPT = """You are a function calling AI model. You may call functions to answer the user.
The functions you can call, one JSON object per line:
<tools>
{tools}
</tools>
{rule}
To call a function, answer exactly like:
{example}"""

_RULES = {
    "auto": "Call a function only when it helps; otherwise answer in plain text.",
    "required": "You must call at least one function.",
}


def tool_system_prompt(tools: Sequence[Tool], choice: str | NamedToolChoice, fmt: ToolFormat) -> str:
    """The system text describing the tools and the call format (for templates without a tools section)."""
    lines = "\n".join(json.dumps(t.function.model_dump(exclude_none=True), ensure_ascii=False) for t in tools)
    if isinstance(choice, NamedToolChoice):
        rule = f"You must call the function {choice.function.name}."
    else:
        rule = _RULES[choice]
    example = fmt.block_open + fmt.render_call("<function-name>", "<arguments-object>") + fmt.block_close
    return _TOOL_PROMPT.format(tools=lines, rule=rule, example=example)


def _arguments_value(arguments: str) -> Any:
    try:  # templates write arguments with ``tojson``: they expect the parsed object
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments


@dataclass(frozen=True)
class ChatFormat:
    """The model's chat template, its tool-call format and whether it reasons first.

    Parameters
    ----------
    tokenizer:
        The engine's tokenizer (its ``chat_template`` and ``apply_chat_template``).
    tool_call_format:
        A format name, or "auto" to read it from the template.

    Raises
    ------
    ConfigError
        An unknown ``tool_call_format``.
    """

    tokenizer: Any
    fmt: ToolFormat
    native_tools: bool
    reasoning: bool

    @classmethod
    def of(cls, tokenizer: Any, tool_call_format: str = "auto") -> ChatFormat:
        template = getattr(tokenizer, "chat_template", None)
        return cls(tokenizer, choose_format(template, tool_call_format), template_has_tools(template),
                   template_has_reasoning(template))

    # -- prompt -----------------------------------------------------------------------------------
    def messages(self, req: ChatCompletionRequest) -> list[dict[str, Any]]:
        """The request's messages as the template expects them."""
        out: list[dict[str, Any]] = []
        for m in req.messages:
            role = "system" if m.role == "developer" else m.role
            msg: dict[str, Any] = {"role": role, "content": m.text()}
            if m.role == "assistant" and m.tool_calls:
                if self.native_tools:
                    msg["tool_calls"] = [self._call_dict(c) for c in m.tool_calls]
                else:
                    msg["content"] += self._calls_text(m)
            if m.role == "tool":
                msg["tool_call_id"] = m.tool_call_id
                if m.name:
                    msg["name"] = m.name
            out.append(msg)
        choice = req.effective_tool_choice()
        if req.tools and choice != "none" and not self.native_tools:
            prompt = tool_system_prompt(req.tools, choice, self.fmt)
            if out and out[0]["role"] == "system":
                out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + prompt}
            else:
                out.insert(0, {"role": "system", "content": prompt})
        return out

    def _call_dict(self, call) -> dict[str, Any]:
        return {"id": call.id or self.fmt.new_id(), "type": "function",
                "function": {"name": call.function.name, "arguments": _arguments_value(call.function.arguments)}}

    def _calls_text(self, m: ChatMessage) -> str:
        calls = [self.fmt.render_call(c.function.name, c.function.arguments) for c in m.tool_calls]
        return self.fmt.block_open + self.fmt.separator.join(calls) + self.fmt.block_close

    def render(self, req: ChatCompletionRequest) -> str:
        """The prompt text of ``req``.

        Raises
        ------
        InvalidRequestError
            The template rejects the messages.
        """
        choice = req.effective_tool_choice()
        tools = None
        if self.native_tools and req.tools and choice != "none":
            tools = [t.model_dump(exclude_none=True) for t in req.tools]
        return self.tokenizer.apply_chat_template(self.messages(req), tools=tools, add_generation_prompt=True,
                                                  **(req.chat_template_kwargs or {}))

    # -- grammar ----------------------------------------------------------------------------------
    def reasoning_of(self, prompt: str, max_units: int | None) -> Reasoning | None:
        """The reasoning section the output starts with, given how the prompt ends (it may open or skip it)."""
        if not self.reasoning:
            return None
        tail = prompt.rstrip()
        if tail.endswith(THINK_CLOSE):
            return None  # the template switched thinking off (Qwen3's enable_thinking=False)
        opened = tail.endswith(THINK_OPEN)
        return Reasoning(open="" if opened else THINK_OPEN, close=THINK_CLOSE, max_units=max_units)

    def turn_spec(self, req: ChatCompletionRequest, prompt: str, answer: str | None = None) -> TurnSpec | None:
        """What the turn may hold (cheap: no schema is converted), or None when neither tools nor reasoning
        shape it; ``answer`` is a Lark grammar the answer must match (None: free text)."""
        choice = req.effective_tool_choice()
        reasoning = self.reasoning_of(prompt, req.max_reasoning_tokens)
        calling = bool(req.tools) and choice != "none"
        if not calling and reasoning is None:
            return None
        mode = "text"
        calls: tuple[CallSpec, ...] = ()
        if calling:
            mode = "auto" if choice == "auto" else "required"
            calls = self.calls(req.tools, choice)
        return TurnSpec(calls=calls, mode=mode, parallel=req.parallel_tool_calls and self.fmt.parallel,
                        separator=self.fmt.separator, block_open=self.fmt.block_open,
                        block_close=self.fmt.block_close, triggers=(self.fmt.trigger,) if mode == "auto" else (),
                        reasoning=reasoning, answer=answer)

    def turn(self, req: ChatCompletionRequest, prompt: str, answer: str | None) -> TurnGrammar | None:
        """The grammar of the whole turn, built here (the start-up template check; requests build theirs in
        a compile worker through :func:`turn_in_worker`), or None when neither tools nor reasoning shape it.

        Raises
        ------
        InvalidRequestError
            A tool's ``parameters`` schema is invalid or unsupported (naming ``tools[i].function.parameters``).
        """
        spec = self.turn_spec(req, prompt, answer)
        return None if spec is None else build_turn(spec)

    def calls(self, tools: Sequence[Tool], choice: str | NamedToolChoice) -> tuple[CallSpec, ...]:
        named = choice.function.name if isinstance(choice, NamedToolChoice) else None
        return tuple(CallSpec(name=t.function.name, head=self.fmt.head_of(t.function.name),
                              schema=t.function.parameters, param=f"tools[{i}].function.parameters",
                              tail=self.fmt.tail, tail_regex=self.fmt.tail_regex)
                     for i, t in enumerate(tools) if named is None or t.function.name == named)


def build_turn(spec: TurnSpec) -> TurnGrammar:
    """``turn_grammar`` with its errors as request errors on the parameter they concern.

    Raises
    ------
    InvalidRequestError
    """
    from lightllm_struct.grammar.errors import CompileTimeout, GrammarError, GrammarTooComplex

    try:
        return turn_grammar(spec)
    except (CompileTimeout, GrammarTooComplex) as exc:  # their own status (422, 413), not a bad request
        exc.param = exc.param or "tools"
        raise
    except GrammarError as exc:
        raise InvalidRequestError(exc.message, param=exc.param or "tools") from exc


def turn_in_worker(spec: TurnSpec, answer: tuple[Any, str] | None, limits: Any) -> TurnGrammar:
    """The turn grammar of ``spec`` with ``answer`` (a JSON schema and the parameter it came from) as the
    constrained answer; run in a compile worker (``ServerCompiles.call``): every schema it converts came
    from the request, so the size limits come first and the deadline kills what they let through.

    Raises
    ------
    GrammarTooComplex
        A schema over ``limits`` (413, with its pointer).
    InvalidRequestError
        A schema that is invalid or unsupported.
    """
    from dataclasses import replace

    from lightllm_struct.engine.constraint_limits import check_limits
    from lightllm_struct.grammar.errors import GrammarError, GrammarTooComplex
    from lightllm_struct.grammar.json_schema import json_schema_to_lark
    from lightllm_struct.request import Constraint

    schemas = [(call.schema, call.param or "tools") for call in spec.calls]
    for schema, param in schemas + ([answer] if answer is not None else []):
        try:
            check_limits(Constraint("json_schema", schema), limits)
        except GrammarTooComplex as exc:
            exc.param = param
            exc.message = f"{param}: {exc.message}"
            raise
    if answer is not None:
        schema, param = answer
        try:
            spec = replace(spec, answer=json_schema_to_lark(schema, whitespace="compact"))
        except GrammarError as exc:
            raise InvalidRequestError(f"{param}: {exc.message}", param=param) from exc
    return build_turn(spec)


def tool_call_grammar(tools: Sequence[Tool], choice: str | NamedToolChoice, *, parallel: bool = True,
                      tool_call_format: str = "hermes") -> str:
    """The Lark grammar of a turn of calls under ``choice`` in a format (no reasoning section).

    Raises
    ------
    InvalidRequestError
        A tool's ``parameters`` schema is invalid or unsupported.
    """
    fmt = choose_format(None, tool_call_format)
    chat = ChatFormat(tokenizer=None, fmt=fmt, native_tools=False, reasoning=False)
    mode = "auto" if choice == "auto" else "required"
    spec = TurnSpec(calls=chat.calls(tools, choice), mode=mode, parallel=parallel and fmt.parallel,
                    separator=fmt.separator, block_open=fmt.block_open, block_close=fmt.block_close,
                    triggers=(fmt.trigger,) if mode == "auto" else ())
    return build_turn(spec).lark

"""Tool calling: the tool-call text format, the prompt that teaches it, and the grammar that enforces it.

The format (Hermes-style, which small instruct models such as SmolLM2 were tuned on)::

    <tool_call>{"name":"get_weather","arguments":{"city":"Paris"}}</tool_call>

one block per call, blocks back to back. For ``tool_choice`` "required" or a named function, the whole output
is constrained by a Lark grammar composed of one alternative per allowed tool, each embedding that tool's
``parameters`` schema as compiled by the JSON-schema frontend (``json_schema_to_lark``), its rules renamed
with a per-tool prefix so that tools cannot collide and each keeps its own ``$ref`` root. For "auto" the
grammar also admits free text, as long as it does not start with ``<`` (so the first byte decides between
text and a call and the two branches stay disjoint for a longest-match lexer).
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence

from lightllm_struct.errors import InvalidRequestError
from lightllm_struct.grammar.errors import GrammarError, SchemaError
from lightllm_struct.server.protocol import ChatMessage, NamedToolChoice, Tool

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
# Every call's text starts with this, then the compact arguments JSON, then "}" + CALL_CLOSE.
CALL_HEAD = '{{"name":"{name}","arguments":'

_TOOL_PROMPT = """You are a function calling AI model. You may call functions to answer the user.
The functions you can call, one JSON object per line:
<tools>
{tools}
</tools>
{rule}
To call a function, answer with a JSON object holding its name and arguments inside tags, exactly like:
<tool_call>{{"name":"<function-name>","arguments":<arguments-object>}}</tool_call>"""

_RULES = {
    "auto": "Call a function only when it helps; otherwise answer in plain text.",
    "required": "You must call at least one function.",
}


def tool_system_prompt(tools: Sequence[Tool], choice: str | NamedToolChoice) -> str:
    """The system text describing the tools and the call format."""
    lines = "\n".join(json.dumps(t.function.model_dump(exclude_none=True), ensure_ascii=False)
                      for t in tools)
    if isinstance(choice, NamedToolChoice):
        rule = f"You must call the function {choice.function.name}."
    else:
        rule = _RULES[choice]
    return _TOOL_PROMPT.format(tools=lines, rule=rule)


def render_tool_call_text(name: str, arguments: str) -> str:
    """How an earlier assistant call appears in the prompt (same format the grammar enforces)."""
    try:  # normalise to the compact form the model is asked to produce
        arguments = json.dumps(json.loads(arguments), separators=(",", ":"), ensure_ascii=False)
    except json.JSONDecodeError:
        pass
    return f"{CALL_OPEN}{CALL_HEAD.format(name=name)}{arguments}}}{CALL_CLOSE}"


def prepare_messages(messages: Sequence[ChatMessage], tools: Sequence[Tool] | None,
                     choice: str | NamedToolChoice) -> list[dict[str, str]]:
    """Plain ``{"role", "content"}`` dicts for the chat template, tools folded into the system turn.

    The tools go in as text rather than through the template's own ``tools`` argument so that every model
    sees the same format that the grammar enforces.
    """
    out: list[dict[str, str]] = []
    for m in messages:
        text = m.text()
        if m.role == "assistant" and m.tool_calls:
            text += "".join(render_tool_call_text(c.function.name, c.function.arguments) for c in m.tool_calls)
        role = "system" if m.role == "developer" else m.role
        out.append({"role": role, "content": text})
    if tools and choice != "none":
        prompt = tool_system_prompt(tools, choice)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + prompt}
        else:
            out.insert(0, {"role": "system", "content": prompt})
    return out


# ---------------------------------------------------------------- grammar
_LARK_TOKEN = re.compile(
    r'(?P<str>"(?:\\.|[^"\\\n])*"i?)'
    r"|(?P<comment>//[^\n]*)"
    r"|(?P<regex>/(?!/)(?:\\.|[^/\\\n])+/[imslux]*)"
    r"|(?P<directive>%[a-z]+)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<other>[\s\S])"
)


def prefix_lark_names(text: str, prefix: str) -> str:
    """Rename every rule and terminal of a Lark grammar by prefixing it, leaving literals untouched.

    Rules are lower-case and terminals upper-case in Lark, so the prefix keeps that case (and a leading
    ``_``/``?`` marker, which changes tree shaping, stays in front).
    """
    out = []
    for m in _LARK_TOKEN.finditer(text):
        name = m.group("name")
        if name is None:
            out.append(m.group(0))
            continue
        lead = name[: len(name) - len(name.lstrip("_"))]
        body = name[len(lead):]
        tag = prefix.upper() if body[:1].isupper() else prefix.lower()
        out.append(f"{lead}{tag}{body}")
    return "".join(out)


def _lark_literal(s: str) -> str:
    return json.dumps(s)  # a JSON string literal is a valid Lark literal for our ASCII tool names


def tool_call_grammar(tools: Sequence[Tool], choice: str | NamedToolChoice, *,
                      parallel: bool = True) -> str:
    """The Lark grammar that every output under ``choice`` must match.

    Raises
    ------
    InvalidRequestError
        A tool's ``parameters`` schema is invalid or unsupported; the error names
        ``tools[i].function.parameters`` and the JSON pointer inside it.
    """
    from lightllm_struct.grammar.json_schema import json_schema_to_lark

    if isinstance(choice, NamedToolChoice):
        allowed = [(i, t) for i, t in enumerate(tools) if t.function.name == choice.function.name]
    else:
        allowed = list(enumerate(tools))
    parts, alts = [], []
    for i, tool in allowed:
        param = f"tools[{i}].function.parameters"
        try:
            body = json_schema_to_lark(tool.function.parameters, whitespace="compact")
        except SchemaError as exc:
            raise InvalidRequestError(f"{param}: {exc.message}", param=param) from exc
        except GrammarError as exc:
            raise InvalidRequestError(f"{param}: {exc.message}", param=param) from exc
        prefix = f"llms_t{i}_"
        parts.append(prefix_lark_names(body, prefix))
        head = _lark_literal(CALL_OPEN + CALL_HEAD.format(name=tool.function.name))
        alts.append(f"llms_call_{i}")
        parts.append(f"llms_call_{i}: {head} {prefix}start {_lark_literal('}' + CALL_CLOSE)}")
    calls = "llms_call+" if parallel else "llms_call"
    if choice == "auto":
        top = f"start: llms_text | {calls}\nllms_text: LLMS_TEXT?\nLLMS_TEXT: /[^<][\\s\\S]*/"
    else:
        top = f"start: {calls}"
    return "\n".join([top, "llms_call: " + " | ".join(alts), *parts]) + "\n"

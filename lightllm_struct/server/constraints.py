"""From the request's constraint fields to the engine's ``Constraint``, with the parameter to blame.

``response_format`` (OpenAI), ``structured_outputs`` (vLLM's extra body) and tool calling are three doors
into the same thing; each gives a ``Constraint`` and the name of the request parameter that an error about
it must point at (``response_format.json_schema.schema`` and so on).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lightllm_struct.errors import InvalidRequestError, LightLLMStructError
from lightllm_struct.request import Constraint
from lightllm_struct.server.protocol import ChatCompletionRequest, _SamplingRequest
from lightllm_struct.server.tools import tool_call_grammar


@dataclass(frozen=True)
class ConstraintSpec:
    """A request's ``constraint`` and ``param``, the request parameter errors about it name."""

    constraint: Constraint
    param: str

    @classmethod
    def of(cls, kind: str, spec: Any, param: str) -> "ConstraintSpec":
        """Raises ``InvalidRequestError`` (naming ``param``) for a spec of the wrong type."""
        try:
            return cls(Constraint(kind, spec), param)
        except InvalidRequestError as exc:
            exc.param = exc.param or param
            raise


def _schema_from_text(text: str, param: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"{param} is not valid JSON: {exc}", param=param) from None


def constraint_of(req: _SamplingRequest) -> ConstraintSpec | None:
    """The output constraint of ``response_format`` or ``structured_outputs``, if any."""
    rf = req.response_format
    if rf is not None and rf.type == "json_object":
        return ConstraintSpec.of("json_object", None, "response_format")
    if rf is not None and rf.type == "json_schema":
        return ConstraintSpec.of("json_schema", rf.json_schema.schema_, "response_format.json_schema.schema")
    so = req.structured_outputs
    if so is None:
        return None
    if so.json_ is not None:
        schema = _schema_from_text(so.json_, "structured_outputs.json") if isinstance(so.json_, str) else so.json_
        return ConstraintSpec.of("json_schema", schema, "structured_outputs.json")
    if so.regex is not None:
        return ConstraintSpec.of("regex", so.regex, "structured_outputs.regex")
    if so.grammar is not None:
        return ConstraintSpec.of("lark", so.grammar, "structured_outputs.grammar")
    return ConstraintSpec.of("choice", list(so.choice), "structured_outputs.choice")


def chat_constraint(req: ChatCompletionRequest) -> ConstraintSpec | None:
    """Tools (when the model may or must call one) or else the plain output constraint."""
    choice = req.effective_tool_choice()
    if not req.tools or choice == "none":
        return constraint_of(req)
    if constraint_of(req) is not None and choice != "auto":
        raise InvalidRequestError("tool_choice that forces a call cannot be combined with response_format "
                                  "or structured_outputs", param="tool_choice")
    grammar = tool_call_grammar(req.tools, choice, parallel=req.parallel_tool_calls)
    return ConstraintSpec.of("lark", grammar, "tools")


def blame(exc: LightLLMStructError, spec: ConstraintSpec | None) -> LightLLMStructError:
    """Point a grammar error at the request parameter it came from (errors raised deep down know no params)."""
    from lightllm_struct.grammar.errors import GrammarError, InvalidTokenError

    if spec is not None and isinstance(exc, GrammarError) and not isinstance(exc, InvalidTokenError) \
            and exc.param is None:
        exc.param = spec.param
        if not exc.message.startswith(spec.param):
            exc.message = f"{spec.param}: {exc.message}"
    return exc

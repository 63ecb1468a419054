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


@dataclass(frozen=True)
class ConstraintSpec:
    """A request's ``constraint`` and ``param``, the request parameter errors about it name."""

    constraint: Constraint
    param: str

    @classmethod
    def of(cls, kind: str, spec: Any, param: str, options: dict | None = None) -> "ConstraintSpec":
        """Raises ``InvalidRequestError`` (naming ``param``) for a spec of the wrong type."""
        try:
            return cls(Constraint(kind, spec, options or {}), param)
        except InvalidRequestError as exc:
            exc.param = exc.param or param
            raise


def _schema_from_text(text: str, param: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"{param} is not valid JSON: {exc}", param=param) from None


def constraint_of(req: _SamplingRequest, *, structural_tag_lark: str | None = None) -> ConstraintSpec | None:
    """The output constraint of ``response_format`` or ``structured_outputs``, if any.

    A structural tag is converted here unless ``structural_tag_lark`` gives its grammar already
    (:func:`request_constraint` converts it in a compile worker).
    """
    rf = req.response_format
    if rf is not None and rf.type == "json_object":
        return ConstraintSpec.of("json_object", None, "response_format")
    # unsupported="report" only where the response can say what was left out (not inside tool/turn grammars)
    report = {"unsupported": "report"} if req.unsupported == "report" else None
    if rf is not None and rf.type == "json_schema":
        return ConstraintSpec.of("json_schema", rf.json_schema.schema_, "response_format.json_schema.schema", report)
    so = req.structured_outputs
    if so is None:
        return None
    if so.json_ is not None:
        schema = _schema_from_text(so.json_, "structured_outputs.json") if isinstance(so.json_, str) else so.json_
        return ConstraintSpec.of("json_schema", schema, "structured_outputs.json", report)
    if so.regex is not None:
        return ConstraintSpec.of("regex", so.regex, "structured_outputs.regex")
    if so.grammar is not None:
        return ConstraintSpec.of("lark", so.grammar, "structured_outputs.grammar")
    if so.structural_tag is not None:
        lark = structural_tag_lark if structural_tag_lark is not None else structural_tag_to_lark(so.structural_tag)
        return ConstraintSpec.of("lark", lark, "structured_outputs.structural_tag")
    return ConstraintSpec.of("choice", list(so.choice), "structured_outputs.choice")


async def request_constraint(req: _SamplingRequest, compiles: Any) -> ConstraintSpec | None:
    """:func:`constraint_of`, with a structural tag converted in one of the server's compile workers
    (``compiles``, a ``ServerCompiles``): its schemas are the request's, of unbounded cost."""
    so = req.structured_outputs
    if so is None or so.structural_tag is None or _read_before_tag(req):
        return constraint_of(req)
    lark = await _in_worker(compiles, "structured_outputs.structural_tag", structural_tag_to_lark, so.structural_tag)
    return constraint_of(req, structural_tag_lark=lark)


def _read_before_tag(req: _SamplingRequest) -> bool:
    """A constraint field that :func:`constraint_of` reads before the structural tag is set."""
    so = req.structured_outputs
    return req.response_format is not None and req.response_format.type in ("json_object", "json_schema") or \
        so.json_ is not None or so.regex is not None or so.grammar is not None


async def _in_worker(compiles: Any, param: str, fn: Any, *args: Any) -> Any:
    """``compiles.call(fn, *args)`` with the pool's own errors (deadline, worker death) blamed on ``param``."""
    from lightllm_struct.grammar.errors import GrammarError

    try:
        return await compiles.call(fn, *args)
    except GrammarError as exc:
        if exc.param is None:
            exc.param = param
            exc.message = f"{param}: {exc.message}"
        raise


def structural_tag_to_lark(tag: Any) -> str:
    """The Lark grammar of a structural tag (run in a compile worker by :func:`request_constraint`)."""
    from lightllm_struct.grammar.errors import GrammarError
    from lightllm_struct.grammar.structural import turn_grammar
    from lightllm_struct.grammar.structural.tag import PARAM, structural_tag_spec

    try:
        return turn_grammar(structural_tag_spec(tag)).lark
    except GrammarError as exc:
        raise InvalidRequestError(exc.message if exc.message.startswith(PARAM) else f"{PARAM}: {exc.message}",
                                  param=PARAM) from exc


def _answer_schema(spec: ConstraintSpec | None) -> tuple[Any, str] | None:
    """The answer constraint as (JSON schema, parameter) to embed after reasoning or beside calls.

    Raises
    ------
    InvalidRequestError
        A kind that cannot be embedded (a regex, choice or grammar beside tools or reasoning).
    """
    if spec is None:
        return None
    kind = spec.constraint.kind
    if kind not in ("json_schema", "json_object"):
        raise InvalidRequestError(f"{spec.param} cannot be combined with tools or a reasoning model; use a JSON "
                                  "schema", param=spec.param)
    return ({"type": "object"} if kind == "json_object" else spec.constraint.spec), spec.param


async def chat_constraint(req: ChatCompletionRequest, turns: Any, prompt: str) -> tuple[ConstraintSpec | None, Any]:
    """The constraint of a chat turn, and its turn grammar when tools or reasoning shape it (else None).

    ``turns`` is the server's ``TurnSupport`` (its ``chat`` format and its ``compiles`` workers, where the
    tool schemas convert); ``prompt`` the rendered prompt (it may open or skip reasoning).
    """
    from lightllm_struct.server.tools import turn_in_worker

    chat = turns.chat
    plain = await request_constraint(req, turns.compiles)
    choice = req.effective_tool_choice()
    if plain is not None and req.tools and choice not in ("none", "auto"):
        raise InvalidRequestError("tool_choice that forces a call cannot be combined with response_format "
                                  "or structured_outputs", param="tool_choice")
    if req.structured_outputs is not None and req.structured_outputs.structural_tag is not None:
        return plain, None  # the user's own structures: the output is theirs to read
    spec = chat.turn_spec(req, prompt)
    if spec is None:
        return plain, None
    answer = _answer_schema(plain)
    param = "tools" if req.tools else "messages"
    turn = await _in_worker(turns.compiles, param, turn_in_worker, spec, answer, turns.compiles.limits)
    return ConstraintSpec.of("lark", turn.lark, param), turn


def blame(exc: LightLLMStructError, spec: ConstraintSpec | None) -> LightLLMStructError:
    """Point a grammar error at the request parameter it came from (errors raised deep down know no params)."""
    from lightllm_struct.grammar.errors import GrammarError

    if spec is not None and isinstance(exc, GrammarError) and exc.param is None:
        exc.param = spec.param
        if not exc.message.startswith(spec.param):
            exc.message = f"{spec.param}: {exc.message}"
    return exc

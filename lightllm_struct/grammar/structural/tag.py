"""vLLM's ``structured_outputs.structural_tag`` (xgrammar's shape) as a :class:`TurnSpec`.

Two spellings are read::

    {"type": "structural_tag", "triggers": ["<function="],
     "structures": [{"begin": "<function=f>", "schema": {...}, "end": "</function>"}]}

    {"type": "structural_tag", "format": {"type": "triggered_tags", "triggers": ["<function="],
     "tags": [{"begin": "<function=f>", "content": {"type": "json_schema", "json_schema": {...}},
               "end": "</function>"}], "at_least_one": false, "stop_after_first": false}}

Free text runs until a trigger; the structure whose ``begin`` starts with it is then constrained (its
schema between ``begin`` and ``end``), and free text resumes after it.
"""
from __future__ import annotations

import json
from typing import Any

from lightllm_struct.grammar.errors import GrammarSyntaxError, UnsupportedSchemaFeature
from lightllm_struct.grammar.structural.turn import CallSpec, TurnSpec

PARAM = "structured_outputs.structural_tag"


def _fail(message: str) -> GrammarSyntaxError:
    return GrammarSyntaxError(f"{PARAM}: {message}", param=PARAM)


def _str(obj: dict, key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise _fail(f"{where}.{key} must be a non-empty string")
    return value


def _triggers(obj: dict, where: str) -> tuple[str, ...]:
    triggers = obj.get("triggers")
    if not isinstance(triggers, list) or not triggers or not all(isinstance(t, str) and t for t in triggers):
        raise _fail(f"{where}.triggers must be a non-empty list of non-empty strings")
    return tuple(triggers)


def _content_schema(tag: dict, where: str) -> Any:
    content = tag.get("content")
    if not isinstance(content, dict) or content.get("type") != "json_schema" or "json_schema" not in content:
        raise UnsupportedSchemaFeature(f"{PARAM}: {where}.content: only {{'type': 'json_schema', 'json_schema': "
                                       "...}} contents are supported", param=PARAM)
    return content["json_schema"]


def structural_tag_spec(tag: dict[str, Any] | str) -> TurnSpec:
    """The turn a structural tag describes.

    Raises
    ------
    GrammarSyntaxError
        A malformed tag (a missing field, a trigger that opens no structure...), naming the field.
    UnsupportedSchemaFeature
        A ``format`` other than ``triggered_tags`` with JSON-schema contents.
    """
    if isinstance(tag, str):
        try:
            tag = json.loads(tag)
        except json.JSONDecodeError as exc:
            raise _fail(f"not valid JSON: {exc}") from None
    if not isinstance(tag, dict):
        raise _fail("must be an object")
    if "format" in tag:
        fmt = tag["format"]
        if not isinstance(fmt, dict) or fmt.get("type") != "triggered_tags":
            raise UnsupportedSchemaFeature(f"{PARAM}: only format type 'triggered_tags' is supported", param=PARAM)
        items = fmt.get("tags")
        schemas = None
        where, triggers = "format", _triggers(fmt, "format")
        at_least_one, first_only = bool(fmt.get("at_least_one")), bool(fmt.get("stop_after_first"))
    else:
        items, where, triggers = tag.get("structures"), "", _triggers(tag, "")
        schemas, at_least_one, first_only = True, False, False
    if not isinstance(items, list) or not items or not all(isinstance(s, dict) for s in items):
        raise _fail(f"{where}.{'structures' if schemas else 'tags'} must be a non-empty list of objects")
    calls = []
    for i, item in enumerate(items):
        at = f"{where}.{'structures' if schemas else 'tags'}[{i}]"
        schema = item.get("schema", True) if schemas else _content_schema(item, at)
        calls.append(CallSpec(name=_str(item, "begin", at), head=item["begin"], schema=schema,
                              tail=_str(item, "end", at), param=f"{PARAM}{at}"))
    return TurnSpec(calls=tuple(calls), mode="required" if at_least_one else "auto", parallel=not first_only,
                    triggers=() if at_least_one else triggers, interleave=not (at_least_one or first_only),
                    whitespace="flexible")

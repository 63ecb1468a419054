"""``propertyNames`` as an automaton over decoded key text: what every key of the object must be.

The schema of the names may use the keywords that speak about strings (``type``, ``pattern``, ``minLength``,
``maxLength``, ``format``, ``enum``/``const``), ``not`` of such a schema, ``allOf`` and in-document ``$ref``;
anything else is refused by pointer. Declared keys are kept or dropped by running the automaton on them;
undeclared keys get it multiplied into their key classes (key_classes.py).
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from interegular.fsm import FSM

from lightllm_struct.grammar.errors import SchemaError, UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema.combinators import ANNOTATIONS
from lightllm_struct.grammar.json_schema.fsm_regex import fsm_of
from lightllm_struct.grammar.json_schema.patterns import FORMATS, PatternUnsupported, pattern_decoded_regex
from lightllm_struct.grammar.json_schema.regex_util import char_class, escape_literal, repeat
from lightllm_struct.grammar.json_schema.strings import ALL
from lightllm_struct.grammar.json_schema.values import nonneg_int

if TYPE_CHECKING:
    from lightllm_struct.grammar.json_schema.converter import Converter

ANY_TEXT = f"{char_class(ALL)}*"
_HANDLED = {"type", "pattern", "minLength", "maxLength", "format", "enum", "const", "not", "allOf", "$ref"}


def names_fsm(conv: Converter, schema: dict, base: str, ptr: str) -> FSM | None:
    """The keys ``propertyNames`` allows (None: any key)."""
    names = schema.get("propertyNames", True)
    if names is True or names == {}:
        return None
    return _fsm(conv, names, base, f"{ptr}/propertyNames", 0)


def _fsm(conv: Converter, names: Any, base: str, ptr: str, depth: int) -> FSM:
    everything = fsm_of(ANY_TEXT)
    if names is True:
        return everything
    if names is False:
        return everything - everything
    if not isinstance(names, dict):
        raise SchemaError("a schema must be an object or a boolean", pointer=ptr)
    if depth > 16:
        raise UnsupportedSchemaFeature("propertyNames nests too deep", pointer=ptr)
    for key in names:
        if key not in _HANDLED and key not in ANNOTATIONS:
            raise UnsupportedSchemaFeature(f"propertyNames with {key!r}", pointer=f"{ptr}/{key}")
    fsm = everything
    for part in _parts(conv, names, base, ptr, depth):
        fsm = fsm & part
    return fsm.reduce()


def _parts(conv: Converter, names: dict, base: str, ptr: str, depth: int):
    if "$ref" in names:
        target = conv.resolver.resolve(names["$ref"], base, pointer=f"{ptr}/$ref")
        yield _fsm(conv, target.schema, target.base, target.pointer, depth + 1)
    for i, sub in enumerate(names.get("allOf", [])):
        yield _fsm(conv, sub, base, f"{ptr}/allOf/{i}", depth + 1)
    if "not" in names:
        yield fsm_of(ANY_TEXT) - _fsm(conv, names["not"], base, f"{ptr}/not", depth + 1)
    types = names.get("type", "string")
    if "string" not in ([types] if isinstance(types, str) else types):
        yield fsm_of(ANY_TEXT) - fsm_of(ANY_TEXT)  # keys are strings: no key at all
    if "pattern" in names:
        try:
            yield fsm_of(pattern_decoded_regex(names["pattern"]))
        except (re.error, PatternUnsupported, TypeError) as exc:
            raise UnsupportedSchemaFeature(f"propertyNames pattern: {exc}", pointer=f"{ptr}/pattern") from exc
    lo, hi = nonneg_int(names, "minLength", ptr, 0) or 0, nonneg_int(names, "maxLength", ptr)
    if lo or hi is not None:
        yield fsm_of(repeat(char_class(ALL) or "", lo, hi))
    if names.get("format") in FORMATS and conv.builder.assert_formats:
        yield fsm_of(FORMATS[names["format"]])
    if "enum" in names or "const" in names:
        values = list(names.get("enum", [])) + ([names["const"]] if "const" in names else [])
        texts = [escape_literal(v) for v in values if isinstance(v, str)]
        yield fsm_of("(?:" + "|".join(texts) + ")") if texts else fsm_of(ANY_TEXT) - fsm_of(ANY_TEXT)

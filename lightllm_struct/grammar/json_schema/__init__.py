"""JSON Schema frontend of the grammar engine: ``json_schema_to_lark`` turns a schema into Lark grammar text.

The text is LALR(1) (``lark.Lark(text, parser="lalr")`` builds without conflicts), every terminal is a regex
that ``interegular`` parses, and terminals that may meet in one parser state are disjoint where a wrong
longest-match choice would lose valid continuations. Intentional restrictions (all sound, i.e. they only
reject): known property keys appear in schema order; declared keys and const/enum strings use their json.dumps
spellings (``literal_escapes``); bounded numbers take exponents only with short mantissas (scientific.py) and
bounded integers none; ``-0`` is not produced under bounds; formats and patterns accept only raw (unescaped)
non-ASCII characters; enum/const objects keep their key order; an object branch of an anyOf/oneOf with other
object branches starts with its first required property; ``$`` in a pattern is ECMA's (no final newline).
"""
from __future__ import annotations

import json
from typing import Any


from lightllm_struct.grammar.errors import SchemaError, UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema.builder import WHITESPACE_MODES, GrammarBuilder
from lightllm_struct.grammar.json_schema.converter import Converter
from lightllm_struct.grammar.json_schema.dialects import DRAFTS, normalize
from lightllm_struct.grammar.json_schema.lalr_check import check_grammar
from lightllm_struct.grammar.json_schema.schema_check import check_schema

__all__ = ["json_schema_to_lark", "any_json_lark", "WHITESPACE_MODES", "DRAFTS"]

def json_schema_to_lark(schema: dict | str | bool, *, whitespace: str = "compact", check: bool = True,
                        literal_escapes: str = "canonical", assert_formats: bool = True, draft: str | None = None,
                        strict: bool = False) -> str:
    """Translate a JSON Schema (drafts 4, 6, 7, 2019-09, 2020-12) into Lark grammar text with a ``start`` rule.

    Parameters
    ----------
    schema : the schema, as a dict, a boolean schema, or JSON text.
    whitespace : "compact" (no whitespace at all, like ``json.dumps(x, separators=(",", ":"))``) or
        "flexible" (bounded whitespace around punctuation).
    check : run lark's LALR(1) analysis and the terminal-overlap check (see lalr_check), turning a failure
        into an error naming the ``anyOf``/``oneOf`` that caused it.
    literal_escapes : how declared keys and ``const``/``enum`` strings may be spelled: "canonical" (the
        ``json.dumps`` spellings, with and without ``ensure_ascii``; forced for ASCII text) or "any" (every
        JSON escape). Undeclared keys and free strings take every spelling either way.
    assert_formats : enforce ``format`` (default: a model should write real e-mails and dates), or treat it as
        draft 2020-12's annotation (False: any string). An unknown format is any string either way.
    draft : the draft of a schema without ``$schema`` (see dialects.DRAFTS); None: 2020-12, with the old
        forms it does not allow (boolean ``exclusiveMinimum``, ``items`` arrays, ``id``) read as draft-04.
    strict : refuse unknown keywords (by pointer) instead of ignoring them as the specification says.

    Returns
    -------
    str : Lark grammar text.

    Raises
    ------
    SchemaError : malformed schema (wrong keyword value types, bad ``$ref``, invalid JSON text); ``pointer``
        names the place.
    UnsupportedSchemaFeature : a keyword that cannot be enforced exactly (never silently loosened).
    ValueError : unknown ``whitespace`` or ``literal_escapes`` mode.
    """
    if whitespace not in WHITESPACE_MODES:
        raise ValueError(f"whitespace must be one of {WHITESPACE_MODES}, got {whitespace!r}")
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise SchemaError(f"schema is not valid JSON: {exc}") from exc
    if not isinstance(schema, (dict, bool)):
        raise SchemaError("a schema must be an object or a boolean")
    check_schema(schema, draft=draft)  # wrong-typed keywords refused by pointer, before the converter reads them
    schema = normalize(schema, draft=draft, strict=strict)
    conv = Converter(schema, whitespace=whitespace, literal_escapes=literal_escapes, assert_formats=assert_formats)
    start = conv.compile(schema, conv.resolver.root_base, "")
    text = conv.builder.render(start)
    if check:
        check_grammar(text, conv.union_pointers)
    return text


def any_json_lark(*, whitespace: str = "compact", root: str = "object") -> str:
    """The canonical any-JSON grammar: any object (``root="object"``, response_format json_object) or value."""
    builder = GrammarBuilder(whitespace=whitespace)
    value = builder.any_json()
    if root == "value":
        return builder.render(value)
    if root != "object":
        raise ValueError(f"root must be 'object' or 'value', got {root!r}")
    return builder.render(value).replace("start: json_value", "start: json_object", 1)

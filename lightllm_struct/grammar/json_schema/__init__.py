"""JSON Schema frontend of the grammar engine: ``json_schema_to_lark`` turns a schema into Lark grammar text.

The text is LALR(1) (``lark.Lark(text, parser="lalr")`` builds without conflicts), every terminal is a regex
that ``interegular`` parses, and terminals that may meet in one parser state are disjoint where a wrong
longest-match choice would lose valid continuations. Intentional restrictions (all sound, i.e. they only
reject): known property keys appear in schema order; declared keys and const/enum strings use their json.dumps
spellings (``literal_escapes``); bounded numbers take exponents only with short mantissas (scientific.py) and
bounded integers none; ``-0`` is not produced under bounds; formats and patterns accept only raw (unescaped)
non-ASCII characters; enum/const objects keep their key order; an object branch of an anyOf/oneOf with other
object branches starts with its first required property (those declared before it follow it); the non-integral
numbers take exponents only when negative (numbers.NON_INTEGRAL_VALUE); ``$`` in a pattern is ECMA's (no final
newline).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lightllm_struct.grammar.errors import SchemaError, UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema.builder import WHITESPACE_MODES, GrammarBuilder
from lightllm_struct.grammar.json_schema.converter import Converter
from lightllm_struct.grammar.json_schema.dialects import DRAFTS, normalize
from lightllm_struct.grammar.json_schema.lalr_check import MESSAGE as _UNDECIDED, check_grammar
from lightllm_struct.grammar.json_schema.report import UNSUPPORTED_MODES, compile_reporting
from lightllm_struct.grammar.json_schema.schema_check import check_schema

__all__ = ["json_schema_to_lark", "convert_json_schema", "Conversion", "any_json_lark", "WHITESPACE_MODES",
           "DRAFTS", "UNSUPPORTED_MODES"]


@dataclass(frozen=True)
class Conversion:
    """A schema's grammar text, and the JSON pointers of keywords left out (``unsupported="report"`` only)."""

    text: str
    unsupported: tuple[str, ...] = ()


def json_schema_to_lark(schema: dict | str | bool, *, whitespace: str = "compact", check: bool = True,
                        literal_escapes: str = "canonical", assert_formats: bool = True, draft: str | None = None,
                        strict: bool = False, documents: Mapping[str, Any] | None = None) -> str:
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
    documents : preloaded schema documents by URI, the only places a ``$ref`` outside ``schema`` may lead
        (nothing is ever fetched); each is read with its own ``$schema`` (else ``draft``).

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
    return convert_json_schema(schema, whitespace=whitespace, check=check, literal_escapes=literal_escapes,
                               assert_formats=assert_formats, draft=draft, strict=strict, documents=documents).text


def convert_json_schema(schema: dict | str | bool, *, whitespace: str = "compact", check: bool = True,
                        literal_escapes: str = "canonical", assert_formats: bool = True, draft: str | None = None,
                        strict: bool = False, documents: Mapping[str, Any] | None = None,
                        unsupported: str = "refuse") -> Conversion:
    """``json_schema_to_lark`` with the keywords left out, if any.

    Parameters
    ----------
    unsupported : "refuse" (default: a keyword that cannot be enforced raises UnsupportedSchemaFeature) or
        "report" (opt-in best effort: compile without each such keyword, see report.py; their JSON pointers
        are in ``Conversion.unsupported``). Other parameters as ``json_schema_to_lark``.

    Raises
    ------
    As ``json_schema_to_lark``; ValueError also for an unknown ``unsupported`` mode or ``documents`` that is
    not a mapping of URI strings to schemas.
    """
    if whitespace not in WHITESPACE_MODES:
        raise ValueError(f"whitespace must be one of {WHITESPACE_MODES}, got {whitespace!r}")
    if unsupported not in UNSUPPORTED_MODES:
        raise ValueError(f"unsupported must be one of {UNSUPPORTED_MODES}, got {unsupported!r}")
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise SchemaError(f"schema is not valid JSON: {exc}") from exc
    if not isinstance(schema, (dict, bool)):
        raise SchemaError("a schema must be an object or a boolean")
    check_schema(schema, draft=draft)  # wrong-typed keywords refused by pointer, before the converter reads them
    schema = normalize(schema, draft=draft, strict=strict)
    docs = _documents(documents)
    for doc in docs.values():
        check_schema(doc, draft=draft)
    docs = {uri: normalize(doc, draft=draft, strict=strict) for uri, doc in docs.items()}

    def convert(schema: Any, docs: dict[str, Any], *, disjoint_any_of: bool = False) -> str:
        conv = Converter(schema, whitespace=whitespace, literal_escapes=literal_escapes,
                         assert_formats=assert_formats, documents=docs, disjoint_any_of=disjoint_any_of)
        start = conv.compile(schema, conv.resolver.root_base, "")
        text = conv.builder.render(start)
        if check:
            try:
                check_grammar(text, conv.union_pointers)
            except UnsupportedSchemaFeature as refused:
                if disjoint_any_of or not _UNDECIDED in str(refused):
                    raise
                try:  # overlapping anyOf alternatives: again with each anyOf as disjoint ones
                    return convert(schema, docs, disjoint_any_of=True)
                except UnsupportedSchemaFeature:
                    raise refused from None
        return text

    if unsupported == "refuse":
        return Conversion(convert(schema, docs))
    text, dropped = compile_reporting(convert, schema, docs)
    return Conversion(text, dropped)


def _documents(documents: Mapping[str, Any] | None) -> dict[str, Any]:
    if documents is None:
        return {}
    if not isinstance(documents, Mapping) or not all(isinstance(u, str) for u in documents):
        raise ValueError("documents must map URI strings to schemas")
    bad = [u for u, d in documents.items() if not isinstance(d, (dict, bool))]
    if bad:
        raise SchemaError(f"preloaded document {bad[0]!r} is not a schema (an object or a boolean)")
    return dict(documents)


def any_json_lark(*, whitespace: str = "compact", root: str = "object") -> str:
    """The canonical any-JSON grammar: any object (``root="object"``, response_format json_object) or value."""
    builder = GrammarBuilder(whitespace=whitespace)
    value = builder.any_json()
    if root == "value":
        return builder.render(value)
    if root != "object":
        raise ValueError(f"root must be 'object' or 'value', got {root!r}")
    return builder.render(value).replace("start: json_value", "start: json_object", 1)

"""Arrays as LALR(1)-friendly rules: a chain "the rest once i elements are written" up to the bounds."""
from __future__ import annotations

from typing import TYPE_CHECKING

from lightllm_struct.grammar.errors import GrammarTooComplex, SchemaError, UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema.builder import NOTHING, Piece
from lightllm_struct.grammar.json_schema.contains import compile_contains
from lightllm_struct.grammar.json_schema.unique import finite_values, unique_array_rule
from lightllm_struct.grammar.json_schema.values import nonneg_int

if TYPE_CHECKING:
    from lightllm_struct.grammar.json_schema.converter import Converter

MAX_EXPANDED_ITEMS = 2048


def compile_array(conv: Converter, schema: dict, base: str, ptr: str) -> Piece:
    prefix = schema.get("prefixItems", [])
    if not isinstance(prefix, list):
        raise SchemaError("prefixItems must be an array", pointer=f"{ptr}/prefixItems")
    _check_array_keywords(schema, ptr)
    lo = nonneg_int(schema, "minItems", ptr, 0) or 0
    hi = nonneg_int(schema, "maxItems", ptr)
    pieces = [conv.compile(s, base, f"{ptr}/prefixItems/{i}") for i, s in enumerate(prefix)]
    items = conv.compile(schema.get("items", True), base, f"{ptr}/items")
    for i, piece in enumerate(pieces):
        if piece.sym is None:
            hi, pieces = (i if hi is None else min(hi, i)), pieces[:i]
            break
    if items.sym is None:
        hi = len(pieces) if hi is None else min(hi, len(pieces))
    if hi is not None and lo > hi:
        return NOTHING
    if "contains" in schema:
        if schema.get("uniqueItems") is True and (hi is None or hi > 1):
            raise UnsupportedSchemaFeature("uniqueItems together with contains is not supported",
                                           pointer=f"{ptr}/uniqueItems")
        return compile_contains(conv, schema, base, ptr, lo, hi)
    if schema.get("uniqueItems") is True and (hi is None or hi > 1):
        return _unique_array(conv, schema, base, ptr, len(pieces), lo, hi)
    if max(lo, hi or 0) > MAX_EXPANDED_ITEMS:
        raise GrammarTooComplex(f"minItems/maxItems above {MAX_EXPANDED_ITEMS}")
    return Piece(_array_rules(conv, pieces, items, lo, hi), None, frozenset({"array"}))


def _unique_array(conv: Converter, schema: dict, base: str, ptr: str, n_prefix: int, lo: int,
                  hi: int | None) -> Piece:
    """``uniqueItems: true`` where every position has finitely many values (unique.py), else refused."""
    prefix = schema.get("prefixItems", [])[:n_prefix if hi is None else min(n_prefix, hi)]
    domains = [finite_values(conv, s, base, f"{ptr}/prefixItems/{i}") for i, s in enumerate(prefix)]
    # positions past hi never occur: their schema does not matter
    tail = [] if hi is not None and hi <= n_prefix else finite_values(conv, schema.get("items", True), base,
                                                                      f"{ptr}/items")
    if tail is None or any(d is None for d in domains):
        raise UnsupportedSchemaFeature("uniqueItems over items with infinitely many values is not supported "
                                       "(only enum, const, boolean and null items)", pointer=f"{ptr}/uniqueItems")
    rule = unique_array_rule(conv, domains, tail, lo, hi, ptr)
    return NOTHING if rule is None else Piece(rule, None, frozenset({"array"}))


def _check_array_keywords(schema: dict, ptr: str) -> None:
    if "unevaluatedItems" in schema and schema["unevaluatedItems"] not in (True, {}):
        raise UnsupportedSchemaFeature("unevaluatedItems is not supported", pointer=f"{ptr}/unevaluatedItems")


def _array_rules(conv: Converter, pieces: list[Piece], items: Piece, lo: int, hi: int | None) -> str:
    b = conv.builder

    def elem(i: int) -> str:
        sym = pieces[i].sym if i < len(pieces) else items.sym
        assert sym is not None
        return sym

    # after[i]: the rest of the array once i elements are written; built from the end (no deep recursion).
    top = hi if hi is not None else max(len(pieces), lo, 1)
    after = {top: b.rule("arr_end", [""]) if hi is not None else b.rule("arr_tail", [f"({b.comma} {elem(top)})*"])}
    for i in range(top - 1, 0, -1):
        after[i] = b.rule(f"arr{i}", [f"{b.comma} {elem(i)} {after[i + 1]}"] + ([""] if i >= lo else []))

    alts = [f"{b.lbrack} {b.rbrack}"] if lo == 0 else []
    if hi is None or hi >= 1:
        alts.append(f"{b.lbrack} {elem(0)} {after[1]} {b.rbrack}")
    return b.rule("array", alts)

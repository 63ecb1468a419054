"""Undeclared object keys split by ``patternProperties``: one key terminal per class of keys with one value schema.

A key that no ``properties`` entry declares takes the schemas of every pattern it matches (search semantics),
or ``additionalProperties`` when it matches none. So the undeclared keys fall into classes, one per set of
matched patterns; each class is the regular language "matches these patterns, none of the others, and is no
declared key", built as an automaton product and written back as a regex (fsm_regex.py). Classes whose value
schemas compile to one grammar symbol share one terminal. The terminals are disjoint by construction, as the
lexer needs. The products are taken over decoded text and written as JSON string content at the end; keys
spelled with ``\\uXXXX`` escapes of non-ASCII characters are left out (as patterns.py spells): a sound
restriction.
"""
from __future__ import annotations

import functools
import itertools
import re
from typing import TYPE_CHECKING, Any

from interegular.fsm import FSM

from lightllm_struct.grammar.errors import SchemaError, UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema.builder import Piece
from lightllm_struct.grammar.json_schema.fsm_regex import fsm_of, to_regex
from lightllm_struct.grammar.json_schema.key_dfa import has_lone_surrogate, key_dfa_excluding
from lightllm_struct.grammar.json_schema.keys import key_regex_excluding
from lightllm_struct.grammar.json_schema.patterns import PatternUnsupported, encoded_unit, pattern_decoded_regex
from lightllm_struct.grammar.json_schema.refs import escape_token
from lightllm_struct.grammar.json_schema.regex_util import char_class, escape_literal
from lightllm_struct.grammar.json_schema.strings import ALL

if TYPE_CHECKING:
    from lightllm_struct.grammar.json_schema.converter import Converter

MAX_PATTERNS = 6
_ANY_KEY = f"{char_class(ALL)}*"


def patterns_of(schema: dict, ptr: str) -> dict[str, Any]:
    pats = schema.get("patternProperties", {})
    if not isinstance(pats, dict):
        raise SchemaError("patternProperties must be an object", pointer=f"{ptr}/patternProperties")
    return pats


def declared_value(key: str, own: Any, pats: dict[str, Any]) -> Any:
    """The schema a declared (or required) key's value must satisfy: its own and every matching pattern's."""
    parts = [own] + [sub for pattern, sub in pats.items() if matches(pattern, key)]
    parts = [p for p in parts if p is not True and p != {}]
    return True if not parts else parts[0] if len(parts) == 1 else {"allOf": parts}


def matches(pattern: str, key: str) -> bool:
    try:
        return re.search(pattern, key) is not None
    except re.error:
        return False  # reported with its pointer when the pattern itself compiles


def extra_keys(conv: Converter, schema: dict, base: str, ptr: str, declared: list[str],
               names: FSM | None = None) -> list[tuple[str, str]]:
    """(key terminal, value symbol) pairs for the undeclared keys (empty when none may appear); ``names``:
    the keys propertyNames allows (None: any).

    Raises
    ------
    UnsupportedSchemaFeature : a pattern with no regular translation, too many patterns, or key classes whose
        regex would be too large.
    """
    pats = patterns_of(schema, ptr)
    addl = conv.compile(schema.get("additionalProperties", True), base, f"{ptr}/additionalProperties")
    if not pats and names is None:
        return [(_other_keys(conv, declared), addl.sym)] if addl.sym else []
    if len(pats) > MAX_PATTERNS:
        raise UnsupportedSchemaFeature(f"more than {MAX_PATTERNS} patternProperties", pointer=f"{ptr}/patternProperties")
    keys = {p: _key_regex(p, f"{ptr}/patternProperties/{escape_token(p)}") for p in pats}
    groups: dict[str, list] = {}
    for chosen in _subsets(list(pats)):
        piece = addl if not chosen else _conjunction(conv, [pats[p] for p in chosen], base, ptr)
        if piece.sym is None:
            continue
        fsm = fsm_of(_ANY_KEY) if names is None else names
        for p in pats:
            fsm = fsm & fsm_of(keys[p]) if p in chosen else fsm - fsm_of(keys[p])
        for key in declared:  # only the declared keys inside this class can collide with it
            if all(matches(p, key) == (p in chosen) for p in pats):
                fsm = fsm - fsm_of(escape_literal(key))
        groups.setdefault(piece.sym, []).append(fsm)
    out = []
    for sym, fsms in groups.items():
        fsm = fsms[0]
        for other in fsms[1:]:
            fsm = fsm | other
        fsm = fsm.reduce()
        if fsm.empty():
            continue
        try:
            out.append((conv.builder.terminal('"' + to_regex(fsm, render=encoded_unit) + '"'), sym))
        except OverflowError as exc:
            raise UnsupportedSchemaFeature(f"patternProperties key classes too large ({exc})",
                                           pointer=f"{ptr}/patternProperties") from exc
    return out


def _other_keys(conv: Converter, declared: list[str]) -> str:
    """The terminal of every key but ``declared``. Its regex (5-80 KB) is for the grammar text; its DFA is
    built from the key list (key_dfa.py), the regex path took 60% of a median schema's compile."""
    regex = key_regex_excluding(declared)
    if any(has_lone_surrogate(key) for key in declared):
        return conv.builder.terminal(regex)
    return conv.builder.terminal(regex, make=functools.partial(key_dfa_excluding, tuple(declared)))


def _subsets(names: list[str]):
    for n in range(len(names) + 1):
        yield from itertools.combinations(names, n)


def _conjunction(conv: Converter, subs: list[Any], base: str, ptr: str) -> Piece:
    live = [s for s in subs if s is not True and s != {}]
    schema = True if not live else live[0] if len(live) == 1 else {"allOf": live}
    return conv.compile(schema, base, f"{ptr}/patternProperties")


def _key_regex(pattern: Any, ptr: str) -> str:
    if not isinstance(pattern, str):
        raise SchemaError("a patternProperties key must be a regex", pointer=ptr)
    try:
        return pattern_decoded_regex(pattern)
    except re.error as exc:
        raise SchemaError(f"invalid pattern: {exc}", pointer=ptr) from exc
    except PatternUnsupported as exc:
        raise UnsupportedSchemaFeature(f"pattern: {exc}", pointer=ptr) from exc

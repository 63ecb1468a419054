"""``uniqueItems: true`` over items with finitely many values: a subset automaton in the grammar.

Uniqueness is not context-free in general, but when every position's schema admits a finite set of values
(``enum``, ``const``, ``boolean``, ``null``, or a ``False`` schema), the rest of an array depends only on the
set of values written so far: one rule per reachable set, each alternative a value not yet in it. Values are
compared as JSON Schema does (1 and 1.0 are equal, true and 1 are not, objects by their members), and each
value is written by one constant piece, so distinct pieces are distinct values. Items with infinitely many
values (free strings, numbers, objects) are refused by pointer: enforcing them needs a semantic check at item
boundaries, which the matcher does not have.
"""
from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING, Any

from lightllm_struct.grammar.errors import UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema.combinators import Unsatisfiable
from lightllm_struct.grammar.json_schema.values import const_piece

if TYPE_CHECKING:
    from lightllm_struct.grammar.json_schema.converter import Converter

MAX_SUBSET_RULES = 512  # also bounds the recursion depth below
_FINITE_TYPES = {"boolean": (True, False), "null": (None,)}


def value_key(value: Any) -> Any:
    """A hashable key equal for JSON values that JSON Schema's equality calls equal."""
    if value is None or isinstance(value, bool):
        return ("lit", value)
    if isinstance(value, (int, float)):
        return ("num", Fraction(value))
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, list):
        return ("arr", tuple(value_key(v) for v in value))
    return ("obj", frozenset((k, value_key(v)) for k, v in value.items()))


def finite_values(conv: Converter, schema: Any, base: str, ptr: str) -> list | None:
    """The values ``schema`` admits, one per equality class, if they are finitely many and known; else None."""
    if schema is False:
        return []
    if schema is True:
        return None
    try:
        flat = conv._flat(schema, base, ptr, 0)
    except Unsatisfiable:
        return []
    if "enum" in flat or "const" in flat:
        candidates = list(flat.get("enum", [])) + ([flat["const"]] if "const" in flat else [])
    else:
        types = flat.get("type")
        types = [types] if isinstance(types, str) else types
        if not isinstance(types, list) or not types or any(t not in _FINITE_TYPES for t in types):
            return None
        candidates = [v for t in types for v in _FINITE_TYPES[t]]
    validator = conv._node_validator(flat, ptr)
    out: dict[Any, Any] = {}
    for value in candidates:
        if validator.is_valid(value):
            out.setdefault(value_key(value), value)
    return list(out.values())


def unique_array_rule(conv: Converter, domains: list[list], tail: list, lo: int, hi: int | None,
                      ptr: str) -> str | None:
    """The rule of an array whose element ``i`` takes a value of ``domains[i]`` (``tail`` past them), no value
    twice, with ``lo`` to ``hi`` elements; None if there is no such array.

    Raises
    ------
    UnsupportedSchemaFeature : more than ``MAX_SUBSET_RULES`` reachable sets of written values.
    """
    b = conv.builder
    keyed = [[(value_key(v), v) for v in d] for d in domains] + [[(value_key(v), v) for v in tail]]
    pieces = {k: const_piece(conv, v).sym for d in keyed for k, v in d}
    rules: dict[frozenset, str | None] = {}
    end = b.rule("uniq_end", [""])

    def domain(i: int) -> list:
        return keyed[min(i, len(domains))]

    def rest(used: frozenset) -> str | None:
        # Sets are visited depth-first up to hi (or the domain's size): bounded by MAX_SUBSET_RULES below.
        n = len(used)
        if hi is not None and n >= hi:
            return end
        if used in rules:
            return rules[used]
        if len(rules) >= MAX_SUBSET_RULES:
            raise UnsupportedSchemaFeature(f"uniqueItems over these items needs more than {MAX_SUBSET_RULES} "
                                           "rules (one per set of values written)", pointer=f"{ptr}/uniqueItems")
        name = rules[used] = b.new_rule("uniq")
        nexts = [(k, rest(used | {k})) for k, _ in domain(n) if k not in used]
        alts = [f"{b.comma} {pieces[k]} {after}" for k, after in nexts if after is not None]
        alts += [""] if n >= lo else []
        if not alts:  # a dead end: fewer than lo distinct values can follow
            rules[used] = None
            return None
        b.set_rule(name, alts)
        return name

    alts = [f"{b.lbrack} {b.rbrack}"] if lo == 0 else []
    if hi is None or hi >= 1:
        firsts = [(k, rest(frozenset({k}))) for k, _ in domain(0)]
        alts += [f"{b.lbrack} {pieces[k]} {after} {b.rbrack}" for k, after in firsts if after is not None]
    if not alts:
        return None
    conv.union_pointers.append(f"{ptr}/uniqueItems")
    return b.rule("uniq_array", alts)

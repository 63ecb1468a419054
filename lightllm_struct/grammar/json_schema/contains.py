"""``contains`` with ``minContains``/``maxContains``: the count of matching items kept in the grammar.

Each position's item schema I splits into C = I and contains, and N = I and not contains: two sound pieces
of disjoint values, so an array's text takes exactly one way through the grammar and its count of C items is
exact. The split is exact where it can be compiled: ``contains`` true or false; an item schema with finitely
many values (each value checked against ``contains`` by jsonschema); otherwise the ``not`` of ``contains``
compiled by the converter (whatever it cannot compile refuses ``contains`` by pointer), and the union of C
and N must be one the LALR(1) table decides (else refused, naming ``contains``).

The array is left-recursive over states (items written, matches counted), both capped where they stop
mattering, so the parser stack does not grow with the array; only states from which an accepting state is
still reachable get rules, so no prefix leads into a dead end.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lightllm_struct.grammar.errors import GrammarTooComplex, UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema.builder import NOTHING, Piece
from lightllm_struct.grammar.json_schema.unique import finite_values
from lightllm_struct.grammar.json_schema.values import const_piece, nonneg_int

if TYPE_CHECKING:
    from lightllm_struct.grammar.json_schema.converter import Converter

MAX_STATES = 8192


def split(conv: Converter, item: Any, contains: Any, base: str, ptr: str, item_ptr: str) -> tuple[Piece, Piece]:
    """(C, N): the item's values that match ``contains`` and those that do not."""
    if contains is True or contains == {}:
        return conv.compile(item, base, item_ptr), NOTHING
    if contains is False:
        return NOTHING, conv.compile(item, base, item_ptr)
    values = finite_values(conv, item, base, item_ptr)
    if values is not None:
        check = conv._node_validator(contains, f"{ptr}/contains")
        b = conv.builder
        return (b.union([const_piece(conv, v) for v in values if check.is_valid(v)], "contains_c"),
                b.union([const_piece(conv, v) for v in values if not check.is_valid(v)], "contains_n"))
    both = contains if item is True else {"allOf": [item, contains]}
    c_piece = conv.compile(both, base, f"{ptr}/contains")
    # contains {not: S} (negation.py's ¬items): the items it does not count are S itself, not ¬¬S
    positive = contains["not"] if isinstance(contains, dict) and set(contains) == {"not"} else None
    try:
        n_piece = conv.compile({"allOf": [item, positive if positive is not None else {"not": contains}]},
                               base, f"{ptr}/contains")
    except UnsupportedSchemaFeature as exc:
        raise UnsupportedSchemaFeature(f"contains whose negation cannot be compiled exactly ({exc.message})",
                                       pointer=f"{ptr}/contains") from exc
    return c_piece, n_piece


def compile_contains(conv: Converter, schema: dict, base: str, ptr: str, lo: int, hi: int | None) -> Piece:
    """An array with ``lo`` to ``hi`` items and between minContains and maxContains items matching contains."""
    min_c = nonneg_int(schema, "minContains", ptr, 1)
    max_c = nonneg_int(schema, "maxContains", ptr)
    if max_c is not None and min_c > max_c:
        return NOTHING
    prefix = schema.get("prefixItems", [])
    n_pos = len(prefix) if hi is None else min(len(prefix), hi)
    splits = [split(conv, s, schema["contains"], base, ptr, f"{ptr}/prefixItems/{i}")
              for i, s in enumerate(prefix[:n_pos])]
    if hi is None or hi > n_pos:
        splits.append(split(conv, schema.get("items", True), schema["contains"], base, ptr, f"{ptr}/items"))
    # states (i, c): i items written (capped at top_i: all positions from there on alike, lo reached), c of
    # them matching (capped at top_c: above it nothing changes; with maxContains, top_c = max and no more C)
    top_i = hi if hi is not None else max(len(splits) - 1, lo, 1)
    top_c = max_c if max_c is not None else min_c
    if (top_i + 1) * (top_c + 1) > MAX_STATES:
        raise GrammarTooComplex(f"contains at {ptr}/contains: counting needs more than {MAX_STATES} states")

    def moves(i: int, c: int):
        """(piece, next state) for the item after state (i, c)."""
        if hi is not None and i >= hi:
            return
        c_piece, n_piece = splits[min(i, len(splits) - 1)]
        nxt = min(i + 1, top_i)
        if n_piece.sym is not None:
            yield n_piece, (nxt, c)
        if c_piece.sym is not None and (max_c is None or c < max_c):
            yield c_piece, (nxt, min(c + 1, top_c))

    def accepting(i: int, c: int) -> bool:
        return i >= lo and c >= min_c

    states = [(i, c) for i in range(top_i + 1) for c in range(top_c + 1)]
    live = {s for s in states if accepting(*s)}
    changed = True
    while changed:  # backwards: the states from which an accepting one can be reached
        changed = False
        for s in states:
            if s not in live and any(t in live for _, t in moves(*s)):
                live.add(s)
                changed = True
    if (0, 0) not in live:
        return NOTHING
    reach, todo = {(0, 0)}, [(0, 0)]
    while todo:  # forwards, through live states only: every rule is used and every prefix can finish
        for _, t in moves(*todo.pop()):
            if t in live and t not in reach:
                reach.add(t)
                todo.append(t)
    b = conv.builder
    names = {s: b.new_rule(f"cnt{s[0]}_{s[1]}") for s in reach if s != (0, 0)}
    rules: dict[tuple[int, int], list[str]] = {s: [] for s in names}
    for s in sorted(reach):
        for piece, t in moves(*s):
            if t in reach:
                head = b.lbrack if s == (0, 0) else f"{names[s]} {b.comma}"
                rules[t].append(f"{head} {piece.sym}")
    for s, alts in rules.items():
        b.set_rule(names[s], alts)
    alts = [f"{b.lbrack} {b.rbrack}"] if accepting(0, 0) else []
    alts += [f"{names[s]} {b.rbrack}" for s in sorted(names) if accepting(*s)]
    conv.union_pointers.append(f"{ptr}/contains")
    return Piece(b.rule("contains_array", alts), None, frozenset({"array"}))

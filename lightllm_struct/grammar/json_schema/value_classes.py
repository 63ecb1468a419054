"""A member's value split into disjoint classes, one per answer to the conditions that test it.

A condition such as ``if: {properties: {kind: {const: "a"}}}`` asks whether a key's value lies in a finite set
of values. Each set a member is tested against splits its values: one class per distinct combination of "in
set j" answers, plus the class of values in none of the sets. Finite classes are the member's schema with an
``enum`` of the class (the converter checks every value against the whole schema); the rest is the member's
one-terminal regex minus every JSON spelling of the listed values (strings, booleans, null; a number has
unboundedly many spellings, so numbers are only split when the member's own values are a finite enum). The
object walk (object_states.py) writes one alternative per class and remembers which one was written.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from lightllm_struct.grammar.errors import UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema.builder import Piece
from lightllm_struct.grammar.json_schema.combinators import ANNOTATIONS, json_equal
from lightllm_struct.grammar.json_schema.fsm_regex import intersection
from lightllm_struct.grammar.json_schema.strings import literal_string

if TYPE_CHECKING:
    from lightllm_struct.grammar.json_schema.converter import Converter

_TYPE_OF = {bool: "boolean", type(None): "null", str: "string", list: "array", dict: "object"}
MAX_CLASSES = 32


def set_key(values: list) -> str:
    return json.dumps(values, sort_keys=True)


def json_type(value: Any) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, (str, list, dict)):
        return _TYPE_OF[type(value)]
    return "integer" if isinstance(value, int) or float(value).is_integer() else "number"


def value_set(schema: Any) -> list | None:
    """The values of a schema made of ``const``/``enum`` (and ``type``, annotations) only; None otherwise."""
    if not isinstance(schema, dict) or not ("const" in schema or "enum" in schema):
        return None
    if set(schema) - ANNOTATIONS - {"const", "enum", "type"}:
        return None
    values = list(schema.get("enum", [])) if isinstance(schema.get("enum", []), list) else None
    if values is None:
        return None
    if "const" in schema:
        values = [v for v in (values if "enum" in schema else [schema["const"]]) if json_equal(v, schema["const"])]
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not isinstance(types, list):
            return None
        values = [v for v in values if json_type(v) in types or json_type(v) == "integer" and "number" in types]
    out: list = []
    for v in values:
        if not any(json_equal(v, w) for w in out):
            out.append(v)
    return out


def member_classes(conv: Converter, own: Any, piece: Piece, sets: list[list], base: str,
                   ptr: str) -> list[tuple[Piece, frozenset[str]]]:
    """(piece, keys of the sets its values lie in) for each non-empty class; the pieces are disjoint and
    together accept exactly what ``piece`` (the member's own schema ``own``) accepts.

    Raises
    ------
    UnsupportedSchemaFeature : the values outside the sets have no exact one-terminal form.
    """
    keys = [set_key(s) for s in sets]
    universe = value_set(own)
    listed = universe if universe is not None else [v for s in sets for v in s]
    groups: dict[frozenset[str], list] = {}
    for v in listed:
        inside = frozenset(k for k, s in zip(keys, sets) if any(json_equal(v, w) for w in s))
        group = groups.setdefault(inside, [])
        if not any(json_equal(v, w) for w in group):
            group.append(v)
    if len(groups) > MAX_CLASSES:
        raise UnsupportedSchemaFeature(f"more than {MAX_CLASSES} value classes for one property", pointer=ptr)
    out = []
    for inside, values in groups.items():
        sub = conv.compile({"allOf": [own, {"enum": values}]} if own is not True else {"enum": values}, base, ptr)
        if sub.sym is not None:
            out.append((sub, inside))
    if universe is None:
        rest = _rest(conv, piece, listed, ptr)
        if rest is not None:
            out.append((rest, frozenset()))
    return out


def _rest(conv: Converter, piece: Piece, listed: list, ptr: str) -> Piece | None:
    """``piece`` without the listed values (None: nothing left)."""
    if piece.regex is None:
        raise UnsupportedSchemaFeature("a condition on the value of a property whose schema is not one terminal",
                                       pointer=ptr)
    spellings = []
    for v in listed:
        kind = json_type(v)
        kind = "number" if kind == "integer" else kind
        if kind not in piece.kinds:
            continue  # the member never takes such a value
        if kind == "string":
            spellings.append(literal_string(v, any_spelling=True))
        elif kind in ("boolean", "null"):
            spellings.append(json.dumps(v))
        else:
            raise UnsupportedSchemaFeature(f"a condition on a {kind} value of a property whose values are not a "
                                           "finite enum", pointer=ptr)
    try:
        regex = intersection([piece.regex], spellings)
    except OverflowError as exc:
        raise UnsupportedSchemaFeature(f"the values outside a condition's set have no regex here ({exc})",
                                       pointer=ptr) from exc
    return conv.builder.scalar(regex, piece.kinds) if regex is not None else None

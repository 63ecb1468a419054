"""``not`` as positive schemas: the complement of a schema written as a union of schemas that compile.

A schema is a conjunction of keyword groups (``type``; each bound; each required key; each property; ...), each
of which constrains one JSON type only (``minimum`` says nothing about strings). So the complement of
``g1 ∧ g2 ∧ ... ∧ gn`` is the *disjoint* union ``¬g1 ∨ (g1 ∧ ¬g2) ∨ ... ∨ (g1 ∧ ... ∧ ¬gn)``, and the
complement of one group is a schema of its own type: ``¬{minimum: m}`` is ``{type: number, exclusiveMaximum:
m}``, ``¬{required: [k]}`` an object without ``k``, ``¬{pattern: p}`` a string that ``p`` does not match
(``NOT_PATTERNS``, compiled as an automaton difference), ``¬{properties: {k: S}}`` an object whose ``k`` is in
``¬S``, ``¬{items: S}`` an array that contains an item of ``¬S``. Disjoint pieces keep the union deterministic for the parser where it can be.

``¬{type: integer}`` among numbers is ``NON_INTEGRAL`` (a regex of the non-integral numbers, numbers.py).
Where no exact positive form exists here (``¬{items: S}`` after ``prefixItems``, ``¬{multipleOf}`` the non-multiples,
``¬format``), :class:`UnsupportedSchemaFeature` names the keyword by JSON pointer: never a looser language.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightllm_struct.grammar.errors import SchemaError, UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema.combinators import (ANNOTATIONS, MAX_BRANCHES, MORE_PATTERNS, NON_INTEGRAL,
                                                              NOT_MULTIPLES, NOT_PATTERNS, Unsatisfiable, json_equal,
                                                              merge)
from lightllm_struct.grammar.json_schema.dialects import INTEGER_SYNTAX
from lightllm_struct.grammar.json_schema.patterns import FORMATS

JSON_TYPES = ("null", "boolean", "object", "array", "number", "string")
_TYPE_OF = {"minimum": "number", "maximum": "number", "exclusiveMinimum": "number", "exclusiveMaximum": "number",
            "minLength": "string", "maxLength": "string", "minItems": "array", "maxItems": "array",
            "minProperties": "object", "maxProperties": "object"}
# the complement of each bound: (keyword, value shift for integers-only counts)
_FLIP = {"minimum": "exclusiveMaximum", "maximum": "exclusiveMinimum", "exclusiveMinimum": "maximum",
         "exclusiveMaximum": "minimum"}
_COUNTS = {"minLength": "maxLength", "maxLength": "minLength", "minItems": "maxItems", "maxItems": "minItems",
           "minProperties": "maxProperties", "maxProperties": "minProperties"}
MAX_DEPTH = 16

Flatten = Callable[[Any, str], dict]


class Negator:
    """Complements of schemas, with ``$ref``/``allOf`` merged away by ``flatten`` (the converter's)."""

    def __init__(self, flatten: Flatten, *, assert_formats: bool) -> None:
        self.flatten = flatten
        self.assert_formats = assert_formats

    def negate(self, schema: Any, ptr: str, *, within: dict | None = None, depth: int = 0) -> list[dict]:
        """Pairwise disjoint schemas whose union is exactly the values ``schema`` rejects.

        ``within``: the schema the complement is conjoined with (its ``additionalProperties: false`` bounds the
        keys an instance can have, which makes "some undeclared key" expressible). [] means nothing.

        Raises
        ------
        UnsupportedSchemaFeature : a keyword whose complement has no exact form here (by pointer).
        """
        if depth > MAX_DEPTH:
            raise UnsupportedSchemaFeature("not: nested too deep", pointer=ptr)
        if schema is True:
            return []
        if schema is False:
            return [{}]
        try:
            flat = self.flatten(schema, ptr)
        except Unsatisfiable:
            return [{}]
        groups = self._groups(flat, ptr, within, depth)
        out: list[dict] = []
        prefix: dict = {}
        for positive, negations in groups:
            for neg in negations:
                piece = _conj(prefix, neg, ptr)
                if piece is not None:
                    out.append(piece)
            prefix = _conj(prefix, positive, ptr)
            if prefix is None:  # the groups so far accept nothing: ``out`` already covers every value
                return out
        if len(out) > MAX_BRANCHES:
            raise UnsupportedSchemaFeature("not: complement has too many branches", pointer=ptr)
        return out

    def _groups(self, s: dict, ptr: str, within: dict | None, depth: int) -> list[tuple[dict, list[dict]]]:
        """(positive group, its complement) for every keyword group of ``s``; the type group first."""
        groups: list[tuple[dict, list[dict]]] = []
        keys = [k for k in s if k not in ANNOTATIONS and k != INTEGER_SYNTAX]
        if "type" in keys or "nullable" in keys:
            groups.append(self._type(s, ptr, within))
        for key in keys:
            where = f"{ptr}/{key}"
            value = s[key]
            if key in ("type", "nullable"):
                continue
            if key in ("enum", "const"):
                groups.append(({key: value}, self._enum(value if key == "enum" else [value], s, where)))
            elif key in _FLIP:
                groups.append(({key: value}, [{"type": ["number"], _FLIP[key]: value}]))
            elif key in _COUNTS:
                groups.append(({key: value}, _count(key, value, where)))
            elif key == "pattern":
                groups.append(({key: value}, [{"type": ["string"], NOT_PATTERNS: [value]}]))
            elif key == MORE_PATTERNS:
                groups += [({"pattern": p}, [{"type": ["string"], NOT_PATTERNS: [p]}]) for p in value]
            elif key == "multipleOf":  # the non-multiples (scalars.py: an automaton difference)
                groups.append(({key: value}, [{"type": ["number"], NOT_MULTIPLES: [value]}]))
            elif key == NOT_MULTIPLES:
                groups += [({key: [m]}, [{"type": ["number"], "multipleOf": m}]) for m in value]
            elif key == NON_INTEGRAL:  # among numbers, the integers (draft 4's by syntax)
                integers = {"type": ["integer"], **({INTEGER_SYNTAX: True} if value == "syntax" else {})}
                groups.append(({key: value}, [integers]))
            elif key == NOT_PATTERNS:
                groups += [({key: [p]}, [{"type": ["string"], "pattern": p}]) for p in value]
            elif key == "format":
                if self.assert_formats and value in FORMATS:
                    raise UnsupportedSchemaFeature("not: the complement of a format", pointer=where)
            elif key == "required":
                groups += [({"required": [k]}, [{"type": ["object"], "properties": {k: False}}]) for k in value]
            elif key == "properties":
                groups += self._properties(value, where, within, depth)
            elif key == "additionalProperties":
                groups.append(self._additional(s, within, where, depth))
            elif key == "items" and (value is True or value == {}):
                continue
            elif key == "items" and "prefixItems" not in s:
                # ¬{items: S}: an array with some item in ¬S, i.e. contains ¬S (contains.py splits each item
                # into ¬S and S itself, so no complement is taken twice)
                groups.append(({key: value}, [{"type": ["array"], "contains": {"not": value}}]))
            elif key == "anyOf":
                groups.append(({key: value}, self.none_of(value, where, within=within, depth=depth)))
            elif key == "oneOf":
                raise UnsupportedSchemaFeature("not: the complement of a oneOf", pointer=where)
            elif key == "not":
                groups.append(({key: value}, [value] if value is not True and value != {} else [{}]))
            elif key == "uniqueItems" and value is False:
                continue
            else:
                raise UnsupportedSchemaFeature(f"not: the complement of {key!r}", pointer=where)
        return groups

    def _type(self, s: dict, ptr: str, within: dict | None) -> tuple[dict, list[dict]]:
        types = _type_set(s)
        if types is None:
            raise SchemaError("type must be a type name or an array of them", pointer=f"{ptr}/type")
        if s.get("nullable") is True:
            types.add("null")
        if "integer" in types and "number" not in types:
            # the non-integral numbers (numbers.NON_INTEGRAL_*); they matter only if the conjoined schema has them
            if "number" in (_type_set(within or {}) or {"number"}):
                left = [t for t in JSON_TYPES if t not in types and t != "number"]
                fractional = {"type": ["number"], NON_INTEGRAL: "syntax" if s.get(INTEGER_SYNTAX) else "value"}
                return {"type": sorted(types)}, ([{"type": left}] if left else []) + [fractional]
            types.add("number")
        types.discard("integer")
        left = [t for t in JSON_TYPES if t not in types]
        positive = {"type": sorted(types)}
        return positive, ([{"type": left}] if left else [])

    def _enum(self, values: list, s: dict, ptr: str) -> list[dict]:
        """Values of the node's types that are none of ``values`` (objects/arrays: refused)."""
        types = s.get("type", list(JSON_TYPES))
        types = {types} if isinstance(types, str) else set(types)
        if "integer" in types:
            types.add("number")
        out: list[dict] = [{"type": [t for t in JSON_TYPES if t not in types]}] if types < set(JSON_TYPES) else []
        out = [o for o in out if o["type"]]
        if any(isinstance(v, (dict, list)) for v in values) and types & {"object", "array"}:
            raise UnsupportedSchemaFeature("not: the complement of an object or array const/enum", pointer=ptr)
        if "null" in types and not any(v is None for v in values):
            out.append({"type": ["null"]})
        if "boolean" in types:
            bools = [b for b in (False, True) if not any(json_equal(v, b) for v in values)]
            if bools:
                out.append({"type": ["boolean"], "enum": bools})
        if "number" in types:
            out += _number_gaps(sorted({v for v in values if isinstance(v, (int, float))
                                        and not isinstance(v, bool)}))
        if "string" in types:
            words = [v for v in values if isinstance(v, str)]
            out.append({"type": ["string"], NOT_PATTERNS: [literal_pattern(w) for w in words]} if words
                       else {"type": ["string"]})
        for t in ("object", "array"):
            if t in types:
                out.append({"type": [t]})
        return out

    def _properties(self, props: dict, ptr: str, within: dict | None, depth: int) -> list[tuple[dict, list[dict]]]:
        groups = []
        for key, sub in props.items():
            where = f"{ptr}/{_escape(key)}"
            inner = self._within_property(within, key, where)
            if inner is False:  # the conjoined schema forbids the key: it cannot hold a rejected value
                groups.append(({"properties": {key: sub}}, []))
                continue
            negs = self.negate(sub, where, within=inner, depth=depth + 1)
            value = negs[0] if len(negs) == 1 else {"anyOf": negs} if negs else False
            negation = [] if value is False else [{"type": ["object"], "required": [key], "properties": {key: value}}]
            groups.append(({"properties": {key: sub}}, negation))
        return groups

    def _within_property(self, within: dict | None, key: str, ptr: str) -> dict | bool | None:
        """What the conjoined schema says of property ``key`` (the complement there is conjoined with it):
        False if it forbids the key, None if nothing is known."""
        if within is None or "patternProperties" in within:
            return None
        sub = within.get("properties", {}).get(key, within.get("additionalProperties", True))
        if sub is False:
            return False
        try:
            return self.flatten(sub, ptr) if sub is not True else None
        except Unsatisfiable:
            return False
        except (UnsupportedSchemaFeature, SchemaError):
            return None

    def _additional(self, s: dict, within: dict | None, ptr: str, depth: int) -> tuple[dict, list[dict]]:
        """``¬additionalProperties``: some undeclared key whose value the schema rejects. Expressible when the
        conjoined schema closes the key set (its own additionalProperties false): one of its extra keys."""
        value = s["additionalProperties"]
        positive = {"properties": {k: True for k in s.get("properties", {})}, "additionalProperties": value}
        if value is True or value == {}:
            return positive, []
        if "patternProperties" in s or within is None or within.get("additionalProperties") is not False \
                or "patternProperties" in within:
            raise UnsupportedSchemaFeature("not: additionalProperties (some undeclared key) outside a closed "
                                           "object", pointer=ptr)
        extra = [k for k in within.get("properties", {}) if k not in s.get("properties", {})]
        negs = self.negate(value, ptr, depth=depth + 1)
        value_neg = negs[0] if len(negs) == 1 else {"anyOf": negs} if negs else False
        out, absent = [], {}
        for k in extra:  # disjoint: the first extra key present whose value is rejected, earlier ones absent
            if value_neg is not False:
                out.append({"type": ["object"], "required": [k], "properties": {**absent, k: value_neg}})
            absent = {**absent, k: value}  # an earlier extra key, if present, holds a value the schema accepts
        return positive, out

    def none_of(self, branches: list, ptr: str, *, within: dict | None = None, depth: int = 0,
                indices: list[int] | None = None) -> list[dict]:
        """¬(b1 ∨ ... ∨ bn) = ¬b1 ∧ ... ∧ ¬bn: the product of the complements (each one disjoint).
        ``indices``: the branches' positions under ``ptr`` (for pointers), by default 0..n-1."""
        out: list[dict] = [{}]
        for i, branch in zip(indices or range(len(branches)), branches):
            negs = self.negate(branch, f"{ptr}/{i}", within=within, depth=depth + 1)
            out = [p for p in (_conj(a, b, ptr) for a in out for b in negs) if p is not None]
            if len(out) > MAX_BRANCHES:
                raise UnsupportedSchemaFeature("not: complement of anyOf has too many branches", pointer=ptr)
        return out


def _type_set(s: dict) -> set[str] | None:
    """The types a (flat) schema allows; integer counts as number's subset (None: not a type keyword)."""
    types = s.get("type", list(JSON_TYPES))
    types = {types} if isinstance(types, str) else set(types) if isinstance(types, list) else None
    return types


def literal_pattern(text: str) -> str:
    """A pattern (search semantics) that matches exactly ``text``: ``\\Z`` (no final-newline slack of ``$``)."""
    import re

    return "^" + re.escape(text) + r"\Z"


def _count(key: str, value: Any, ptr: str) -> list[dict]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise SchemaError(f"{key} must be a non-negative integer", pointer=ptr)
    kind = _TYPE_OF[key]
    if key.startswith("min"):
        return [] if value <= 0 else [{"type": [kind], _COUNTS[key]: int(value) - 1 if value == int(value)
                                       else int(value)}]
    return [{"type": [kind], _COUNTS[key]: int(value) + 1}]


def _number_gaps(values: list) -> list[dict]:
    """Numbers other than ``values``: the open intervals between them."""
    if not values:
        return [{"type": ["number"]}]
    out = [{"type": ["number"], "exclusiveMaximum": values[0]}]
    out += [{"type": ["number"], "exclusiveMinimum": a, "exclusiveMaximum": b} for a, b in zip(values, values[1:])]
    out.append({"type": ["number"], "exclusiveMinimum": values[-1]})
    return out


def _conj(a: dict, b: dict, ptr: str) -> dict | None:
    """a ∧ b (None: unsatisfiable). Merged eagerly where merge can, lazily (allOf) where it cannot."""
    if not a:
        return b
    if not b:
        return a
    try:
        out = merge(a, b, pointer=ptr)
    except Unsatisfiable:
        return None
    except UnsupportedSchemaFeature:
        return {"allOf": [a, b]}
    return None if _empty(out) else out


def _empty(s: dict) -> bool:
    """Obviously unsatisfiable merged schemas (so that complements do not grow with dead branches)."""
    if s.get("enum") == []:
        return True
    props = s.get("properties", {})
    if any(props.get(k) is False for k in s.get("required", [])):
        return s.get("type") == ["object"]
    return False


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")

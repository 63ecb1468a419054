"""``unevaluatedProperties``/``unevaluatedItems`` next to applicators, as a union of cases with known annotations.

Which properties (array positions) count as evaluated depends on which subschemas validate: an ``anyOf``
branch's ``properties`` count only if that branch holds. A *case* fixes that choice: a conjunction of schemas
(the node's own keywords, some ``anyOf`` branches, exactly one ``oneOf`` branch with the others negated, ``if``
with ``then`` or ``¬if`` with ``else``, a ``dependentSchemas`` entry with its key present or the key absent), so
its evaluated keys are static: ``properties``, ``patternProperties``, everything after ``additionalProperties``
or a nested ``unevaluatedProperties`` (``prefixItems``; everything after ``items``). The node is the union of
its cases, each conjoined with ``unevaluated*`` applied to the keys (positions) that case leaves unevaluated.

Exact because the cases partition the instances: a case states exactly which subschemas hold (the ``anyOf``
branches it chose, and the complements of the others; ``oneOf``'s one branch and the others' complements;
``if`` and ``then``, or ``¬if`` and ``else``), so the instance's case sees exactly its real annotations. The
complements are written by negation.py through the converter (refused by pointer where none is exact). ``contains`` marks the positions its schema matches, which no static case
knows: refused beside a non-trivial ``unevaluatedItems``.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lightllm_struct.grammar.errors import UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema.combinators import Unsatisfiable

Flatten = Callable[[Any, str], dict]
APPLICATORS = ("anyOf", "oneOf", "if", "then", "else", "dependentSchemas")
WORDS = ("unevaluatedProperties", "unevaluatedItems")
MAX_CASES = 64
MAX_ANY_OF = 4  # anyOf branches (2^n - 1 subsets of them)


@dataclass(frozen=True)
class Seen:
    """What one case evaluates: property names, patterns, all properties; prefix positions, all positions."""

    keys: frozenset = frozenset()
    patterns: frozenset = frozenset()
    every_key: bool = False
    prefix: int = 0
    every_item: bool = False
    contains: bool = False

    def __or__(self, other: Seen) -> Seen:
        return Seen(self.keys | other.keys, self.patterns | other.patterns, self.every_key or other.every_key,
                    max(self.prefix, other.prefix), self.every_item or other.every_item,
                    self.contains or other.contains)


def needs_cases(schema: dict) -> bool:
    """A flat node whose unevaluated* depends on applicators (absorb_unevaluated left it)."""
    return any(schema.get(w, True) not in (True, {}) for w in WORDS)


def as_cases(schema: dict, flatten: Flatten, ptr: str) -> dict:
    """``schema`` (flat, with a non-trivial unevaluated*) as an ``anyOf`` of its cases, unevaluated* applied.

    Raises
    ------
    UnsupportedSchemaFeature : ``contains`` beside ``unevaluatedItems``, or too many cases.
    Unsatisfiable : no case holds.
    """
    out = [case for case, _ in _applied(schema, flatten, ptr, 0)]
    if not out:
        raise Unsatisfiable
    return out[0] if len(out) == 1 and isinstance(out[0], dict) else {"anyOf": out}


def _applied(schema: dict, flatten: Flatten, ptr: str, depth: int) -> list[tuple[Any, Seen]]:
    """The cases of ``schema`` with its own unevaluated* applied, and what each then evaluates."""
    rest = {k: v for k, v in schema.items() if k not in WORDS}
    out = []
    for case, seen in _cases(rest, flatten, ptr, depth):
        extra = _unevaluated(schema, seen, ptr)
        covered = Seen(every_key=schema.get("unevaluatedProperties", True) not in (True, {}),
                       every_item=schema.get("unevaluatedItems", True) not in (True, {}))
        out.append((case if extra is None else _conj(case, extra), seen | covered))
    return out


def _unevaluated(schema: dict, seen: Seen, ptr: str) -> dict | None:
    parts: dict[str, Any] = {}
    props = schema.get("unevaluatedProperties", True)
    if props not in (True, {}) and not seen.every_key:
        parts.update({"properties": {k: True for k in sorted(seen.keys)},
                      "patternProperties": {p: True for p in sorted(seen.patterns)}, "additionalProperties": props})
        if not parts["patternProperties"]:
            del parts["patternProperties"]
    items = schema.get("unevaluatedItems", True)
    if items not in (True, {}) and not seen.every_item:
        if seen.contains:
            raise UnsupportedSchemaFeature("unevaluatedItems beside contains (the positions it marks depend on "
                                           "the items)", pointer=f"{ptr}/unevaluatedItems")
        parts.update({"prefixItems": [True] * seen.prefix, "items": items})
    return parts or None


def _own(flat: dict) -> Seen:
    """What a node's own keywords (no applicators) evaluate."""
    return Seen(keys=frozenset(flat.get("properties", {}) if isinstance(flat.get("properties"), dict) else ()),
                patterns=frozenset(flat.get("patternProperties", {}) if isinstance(flat.get("patternProperties"),
                                                                                    dict) else ()),
                every_key="additionalProperties" in flat or "unevaluatedProperties" in flat,
                prefix=len(flat.get("prefixItems", [])) if isinstance(flat.get("prefixItems"), list) else 0,
                every_item="items" in flat or "unevaluatedItems" in flat, contains="contains" in flat)


def _cases(schema: Any, flatten: Flatten, ptr: str, depth: int) -> list[tuple[Any, Seen]]:
    """(validating schema, what it evaluates) for every case of ``schema``."""
    if depth > 16:
        raise UnsupportedSchemaFeature("unevaluated*: applicators nested too deep", pointer=ptr)
    if schema is True or schema == {}:
        return [(True, Seen())]
    try:
        flat = flatten(schema, ptr)
    except Unsatisfiable:
        return []
    if needs_cases(flat):  # a nested unevaluated*: its own cases, and it evaluates what it covers
        return _applied(flat, flatten, ptr, depth + 1)
    own = {k: v for k, v in flat.items() if k not in APPLICATORS}
    choices: list[list[tuple[Any, Seen]]] = [[(own, _own(own))]]
    if isinstance(flat.get("anyOf"), list):
        choices.append(_any_of(flat["anyOf"], flatten, ptr, depth))
    if isinstance(flat.get("oneOf"), list):
        choices.append(_one_of(flat["oneOf"], flatten, ptr, depth))
    if "if" in flat:
        choices.append(_if(flat, flatten, ptr, depth))
    if isinstance(flat.get("dependentSchemas"), dict):
        for key, sub in flat["dependentSchemas"].items():
            present = {"type": "object", "required": [key]}
            choices.append([({"allOf": [present, c]}, s) for c, s in _cases(sub, flatten, ptr, depth + 1)]
                           + [({"not": present}, Seen())])
    return _product(choices, ptr)


def _any_of(branches: list, flatten: Flatten, ptr: str, depth: int) -> list[tuple[Any, Seen]]:
    if len(branches) > MAX_ANY_OF:
        raise UnsupportedSchemaFeature("unevaluated* next to an anyOf of many branches", pointer=f"{ptr}/anyOf")
    each = [_cases(b, flatten, f"{ptr}/anyOf/{i}", depth + 1) for i, b in enumerate(branches)]
    out: list[tuple[Any, Seen]] = []
    for n in range(1, len(branches) + 1):
        for chosen in itertools.combinations(range(len(branches)), n):
            # exactly these branches hold (the others' complements: the cases are disjoint, which the
            # parser tells apart more often than overlapping ones)
            others = [b for i, b in enumerate(branches) if i not in chosen]
            rest = [[({"not": {"anyOf": others}}, Seen())]] if others else []
            out += _product([each[i] for i in chosen] + rest, ptr)
    return out


def _one_of(branches: list, flatten: Flatten, ptr: str, depth: int) -> list[tuple[Any, Seen]]:
    out: list[tuple[Any, Seen]] = []
    for i, branch in enumerate(branches):
        others = [b for j, b in enumerate(branches) if j != i]
        for case, seen in _cases(branch, flatten, f"{ptr}/oneOf/{i}", depth + 1):
            out.append(({"allOf": [case, {"not": {"anyOf": others}}]} if others else case, seen))
    return out


def _if(flat: dict, flatten: Flatten, ptr: str, depth: int) -> list[tuple[Any, Seen]]:
    condition = _cases(flat["if"], flatten, f"{ptr}/if", depth + 1)
    if "then" not in flat and "else" not in flat:  # a lone if still annotates where it holds
        return condition + [({"not": flat["if"]}, Seen())]
    then = _product([condition, _cases(flat.get("then", True), flatten, f"{ptr}/then", depth + 1)], ptr)
    other = [({"allOf": [{"not": flat["if"]}, c]}, s)
             for c, s in _cases(flat.get("else", True), flatten, f"{ptr}/else", depth + 1)]
    return then + other


def _product(choices: list[list[tuple[Any, Seen]]], ptr: str) -> list[tuple[Any, Seen]]:
    out: list[tuple[Any, Seen]] = [(True, Seen())]
    for options in choices:
        if len(out) * len(options) > MAX_CASES:
            raise UnsupportedSchemaFeature("unevaluated* next to applicators with too many cases", pointer=ptr)
        out = [(_conj(a, b), sa | sb) for a, sa in out for b, sb in options]
    return out


def _conj(a: Any, b: Any) -> Any:
    if a is True or a == {}:
        return b
    if b is True or b == {}:
        return a
    return {"allOf": [a, b]}

"""Merging schemas (``allOf``, ``$ref`` with siblings, ``anyOf`` branches with their parent's keywords).

``merge(a, b)`` returns one schema whose instances are exactly those valid under both, or raises
UnsupportedSchemaFeature when no exact single-schema form exists here (two different patterns, say). Subschemas
that both sides constrain become ``{"allOf": [x, y]}`` and are merged lazily when compiled, so recursive
schemas merge in finite time.
"""
from __future__ import annotations

import itertools
import math
import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from lightllm_struct.grammar.errors import SchemaError, UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema.conditionals import CONDITION_WORDS, has_conditional, if_as_any_of

ANNOTATIONS = frozenset({
    "title", "description", "default", "examples", "$comment", "$schema", "$id", "$anchor", "$defs",
    "definitions", "deprecated", "readOnly", "writeOnly", "contentMediaType", "contentEncoding",
    "contentSchema", "$vocabulary", "$dynamicAnchor",
})
_LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties", "minContains")
_UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties", "maxContains")
# Patterns beyond the first of a merged node: every one must match (scalars.py intersects their automata).
MORE_PATTERNS = "$lightllm:patterns"
# Patterns no string of the node may match (complements of ``pattern`` and of string const/enum, negation.py).
NOT_PATTERNS = "$lightllm:notPatterns"
# A number of the node is not an integer: "value" (not integral) or "syntax" (draft 4: written with a fraction
# or an exponent); the complement of ``type: integer`` among numbers (negation.py).
NON_INTEGRAL = "$lightllm:nonIntegral"
# Steps no number of the node is a multiple of (the complement of ``multipleOf``, negation.py).
NOT_MULTIPLES = "$lightllm:notMultiples"
_SCHEMA_VALUED = ("items", "additionalProperties", "propertyNames", "unevaluatedItems", "unevaluatedProperties")
MAX_BRANCHES = 64


class Unsatisfiable(Exception):
    """A conjunction that accepts nothing (a ``false`` schema, types with no common member)."""


def json_equal(a: Any, b: Any) -> bool:
    """JSON Schema equality: numbers by value (1 == 1.0), booleans apart from numbers, deep for containers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _types(schema: dict) -> set[str] | None:
    t = schema.get("type")
    return None if t is None else ({t} if isinstance(t, str) else set(t))


def _merge_types(a: set[str] | None, b: set[str] | None) -> list[str] | None:
    if a is None or b is None:
        return None if a is None and b is None else sorted(a if b is None else b)
    out = a & b
    if "integer" in a and "number" in b or "number" in a and "integer" in b:
        out.add("integer")
    return sorted(out)


def _both(x: Any, y: Any) -> Any:
    if x is True or x == {}:
        return y
    if y is True or y == {}:
        return x
    return {"allOf": [x, y]}




def _merge_properties(a: dict, b: dict, out: dict, pointer: str) -> None:
    if a.get("patternProperties") or b.get("patternProperties"):
        _merge_patterned(a, b, out, pointer)
        return
    pa, pb = a.get("properties", {}), b.get("properties", {})
    props: dict[str, Any] = {}
    for key in list(pa) + [k for k in pb if k not in pa]:
        # A side that does not name ``key`` still constrains it through its additionalProperties.
        sa = pa.get(key, a.get("additionalProperties", True))
        sb = pb.get(key, b.get("additionalProperties", True))
        props[key] = _both(sa, sb)
    if props:
        out["properties"] = props
    if "additionalProperties" in a or "additionalProperties" in b:
        out["additionalProperties"] = _both(a.get("additionalProperties", True), b.get("additionalProperties", True))


def _merge_patterned(a: dict, b: dict, out: dict, pointer: str) -> None:
    """Property keywords with patternProperties on either side. Per key, a side asks its property schema, and
    its matching patterns' schemas (which apply whether or not the key is declared), and its
    additionalProperties where neither names the key. A key one side declares therefore takes from the other
    side that side's additionalProperties where none of its patterns matches. The merged patterns are the
    union of both sides' (``allOf`` where one pattern is on both); a key matching only a pattern of ``a``
    must also satisfy ``b``'s additionalProperties: exact where that is true, where ``b`` has no patterns (its
    additionalProperties joins each of ``a``'s, unless a key ``b`` declares matches one, as ``b`` then asks
    that key's own schema), or where every pattern of ``a`` is also one of ``b``'s. Otherwise refused."""
    sides = [(s.get("patternProperties") or {}, s.get("properties", {}), s.get("additionalProperties", True))
             for s in (a, b)]
    pats: dict[str, Any] = {}
    for pattern in list(sides[0][0]) + [p for p in sides[1][0] if p not in sides[0][0]]:
        pats[pattern] = _both(sides[0][0].get(pattern, True), sides[1][0].get(pattern, True))
    for (own, _, _), (other, other_props, other_x) in (sides, sides[::-1]):
        beyond = [p for p in own if p not in other]
        if not beyond or _trivial(other_x):
            continue
        if other or any(_matches(beyond, key, pointer) for key in other_props):
            raise UnsupportedSchemaFeature("cannot merge patternProperties with other property keywords",
                                           pointer=f"{pointer}/patternProperties")
        for pattern in beyond:
            pats[pattern] = _both(pats[pattern], other_x)
    props: dict[str, Any] = {}
    for key in list(sides[0][1]) + [k for k in sides[1][1] if k not in sides[0][1]]:
        props[key] = _both(*(pp[key] if key in pp else True if _matches(list(pp_pats), key, pointer) else x
                             for pp_pats, pp, x in sides))
    if props:
        out["properties"] = props
    out["patternProperties"] = pats
    if "additionalProperties" in a or "additionalProperties" in b:
        out["additionalProperties"] = _both(sides[0][2], sides[1][2])


def _matches(patterns: list[str], key: str, pointer: str) -> bool:
    """Whether any pattern matches the key as jsonschema (and the key classes) read it."""
    try:
        return any(re.search(p, key) is not None for p in patterns)
    except (re.error, TypeError):
        raise UnsupportedSchemaFeature("cannot merge patternProperties with a pattern Python cannot read",
                                       pointer=f"{pointer}/patternProperties") from None


def _trivial(schema: Any) -> bool:
    return schema is True or schema == {}


def _merge_items(a: dict, b: dict, out: dict) -> None:
    pa, pb = a.get("prefixItems", []), b.get("prefixItems", [])
    n = max(len(pa), len(pb))
    if n:
        out["prefixItems"] = [_both(pa[i] if i < len(pa) else a.get("items", True),
                                    pb[i] if i < len(pb) else b.get("items", True)) for i in range(n)]
    if "items" in a or "items" in b:
        out["items"] = _both(a.get("items", True), b.get("items", True))


def _merge_contains(a: dict, b: dict, out: dict, pointer: str) -> None:
    """minContains/maxContains count the items of their own node's ``contains`` (without one they say
    nothing): the counts of one ``contains`` schema merge exactly (the larger minimum, the smaller maximum),
    two different ``contains`` schemas are two counts, refused."""
    out.pop("minContains", None)
    out.pop("maxContains", None)
    sides = [s for s in (a, b) if "contains" in s]
    if not sides:
        return
    if len(sides) == 2 and not json_equal(a["contains"], b["contains"]):
        raise UnsupportedSchemaFeature("cannot merge two different 'contains' constraints",
                                       pointer=f"{pointer}/contains")
    out["contains"] = sides[0]["contains"]
    out["minContains"] = max(s.get("minContains", 1) for s in sides)
    maxes = [s["maxContains"] for s in sides if "maxContains" in s]
    if maxes:
        out["maxContains"] = min(maxes)


def merge(a: dict, b: dict, *, pointer: str) -> dict:
    """The conjunction of two schemas without ``$ref``/``allOf`` at their top level.

    Raises
    ------
    UnsupportedSchemaFeature : a keyword present on both sides with no exact merged form.
    """
    a, b = _meaningful_conditions(a), _meaningful_conditions(b)
    if has_conditional(a) and has_conditional(b) and not all(json_equal(a.get(w), b.get(w)) for w in CONDITION_WORDS):
        b = if_as_any_of(b, pointer=pointer)  # two different conditionals: one of them as (a product with) anyOf
    out: dict[str, Any] = {}
    types = _merge_types(_types(a), _types(b))
    if types is not None:
        if not types:
            raise Unsatisfiable
        out["type"] = types
    _merge_properties(a, b, out, pointer)
    _merge_items(a, b, out)
    enums = [s["enum"] if "enum" in s else [s["const"]] for s in (a, b) if "enum" in s or "const" in s]
    if enums:
        values = enums[0] if len(enums) == 1 else [v for v in enums[0] if any(json_equal(v, w) for w in enums[1])]
        out["enum"] = values
    if "required" in a or "required" in b:
        out["required"] = list(dict.fromkeys(list(a.get("required", [])) + list(b.get("required", []))))
    for key in _LOWER + _UPPER:
        vals = [s[key] for s in (a, b) if key in s]
        if vals:
            out[key] = max(vals) if key in _LOWER else min(vals)
    if a.get("uniqueItems") or b.get("uniqueItems"):
        out["uniqueItems"] = True
    _merge_branches(a, b, out, pointer)
    _merge_patterns(a, b, out)
    excluded = list(dict.fromkeys(p for s in (a, b) for p in s.get(NOT_PATTERNS, [])))
    if excluded:
        out[NOT_PATTERNS] = excluded
    steps = list(dict.fromkeys(p for s in (a, b) for p in s.get(NOT_MULTIPLES, [])))
    if steps:
        out[NOT_MULTIPLES] = steps
    if "not" in a and "not" in b and not json_equal(a["not"], b["not"]):
        out["not"] = {"anyOf": [a["not"], b["not"]]}  # ¬x ∧ ¬y = ¬(x ∨ y)
    _merge_contains(a, b, out, pointer)
    _merge_dependents(a, b, out, pointer)
    handled = {"dependentSchemas", "dependentRequired", "type", "properties", "additionalProperties", "patternProperties", "prefixItems", "items", "enum",
               "const", "required",
               "uniqueItems", "anyOf", "oneOf", "pattern", MORE_PATTERNS, NOT_PATTERNS, NOT_MULTIPLES, *_LOWER, *_UPPER,
               *ANNOTATIONS, "contains"} | ({"not"} if "not" in out else set())
    for key in (k for s in (a, b) for k in s if k not in handled):
        if key in a and key in b and not json_equal(a[key], b[key]):
            if key in _SCHEMA_VALUED:
                out[key] = _both(a[key], b[key])
                continue
            if key == "multipleOf" and _lcm(a[key], b[key]) is not None:
                out[key] = _lcm(a[key], b[key])
                continue
            raise UnsupportedSchemaFeature(f"cannot merge two different {key!r} constraints",
                                           pointer=f"{pointer}/{key}")
        out[key] = a[key] if key in a else b[key]
    return out


def _lcm(x: Any, y: Any) -> int | float | None:
    """The least common multiple of two positive multipleOf steps (rationals: lcm of the numerators over the gcd
    of the denominators, in lowest terms): a number is a multiple of both exactly when it is one of this. None
    where a step is malformed (the scalar compile reports it) or the result has no exact float spelling."""
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in (x, y)):
        return None
    try:
        fx, fy = (Fraction(Decimal(repr(v) if isinstance(v, float) else v)) for v in (x, y))
    except (InvalidOperation, ValueError):  # inf, nan
        return None
    if fx <= 0 or fy <= 0:
        return None
    lcm = Fraction(math.lcm(fx.numerator, fy.numerator), math.gcd(fx.denominator, fy.denominator))
    if lcm.denominator == 1:
        return int(lcm)
    as_float = float(lcm)
    return as_float if Fraction(Decimal(repr(as_float))) == lcm else None


def _meaningful_conditions(schema: dict) -> dict:
    """``schema`` without a lone ``if`` or a ``then``/``else`` without ``if`` (they assert nothing, and merged
    next to the other side's ``if`` they would change its meaning)."""
    if has_conditional(schema) or not any(w in schema for w in CONDITION_WORDS):
        return schema
    return {k: v for k, v in schema.items() if k not in CONDITION_WORDS}


def _merge_dependents(a: dict, b: dict, out: dict, pointer: str) -> None:
    """dependentSchemas key by key (both apply when the key is present), dependentRequired likewise (the
    union of the keys each side requires)."""
    for word in ("dependentSchemas", "dependentRequired"):
        sides = [s[word] for s in (a, b) if word in s]
        if len(sides) == 1 or len(sides) == 2 and json_equal(*sides):
            out[word] = sides[0]
        elif sides:
            if not all(isinstance(s, dict) for s in sides):
                raise SchemaError(f"{word} must be an object", pointer=f"{pointer}/{word}")
            both = dict(sides[0])
            for key, value in sides[1].items():
                if key not in both:
                    both[key] = value
                elif word == "dependentSchemas":
                    both[key] = _both(both[key], value)
                elif isinstance(both[key], list) and isinstance(value, list):
                    both[key] = list(dict.fromkeys([*both[key], *value]))
                else:
                    raise SchemaError("dependentRequired must map keys to arrays of strings",
                                      pointer=f"{pointer}/{word}")
            out[word] = both


def _merge_patterns(a: dict, b: dict, out: dict) -> None:
    patterns = [p for s in (a, b) for p in ([s["pattern"]] if "pattern" in s else []) + list(s.get(MORE_PATTERNS, []))]
    patterns = list(dict.fromkeys(patterns))
    if patterns:
        out["pattern"] = patterns[0]
    if len(patterns) > 1:
        out[MORE_PATTERNS] = patterns[1:]


def as_jsonschema(schema: dict) -> dict:
    """``schema`` with this package's internal keywords written as JSON Schema (for ``jsonschema`` checks)."""
    if not {MORE_PATTERNS, NOT_PATTERNS, NON_INTEGRAL, NOT_MULTIPLES} & set(schema):
        return schema
    out = {k: v for k, v in schema.items() if k not in (MORE_PATTERNS, NOT_PATTERNS, NON_INTEGRAL, NOT_MULTIPLES)}
    extra = [{"pattern": p} for p in schema.get(MORE_PATTERNS, [])]
    if NON_INTEGRAL in schema:  # (by value: a draft-04 "1.0" is left out of an enum here, which only narrows)
        extra.append({"not": {"type": "integer"}})
    if schema.get(NOT_MULTIPLES):
        extra.append({"not": {"type": "number", "anyOf": [{"multipleOf": m} for m in schema[NOT_MULTIPLES]]}})
    if schema.get(NOT_PATTERNS):
        extra.append({"not": {"type": "string", "anyOf": [{"pattern": p} for p in schema[NOT_PATTERNS]]}})
    return {**out, "allOf": [*out.get("allOf", []), *extra]}


def _merge_branches(a: dict, b: dict, out: dict, pointer: str) -> None:
    for key in ("anyOf", "oneOf"):
        if key in a and key in b:
            pairs = list(itertools.product(a[key], b[key]))
            if len(pairs) > MAX_BRANCHES:
                raise UnsupportedSchemaFeature(f"{key} product too large to merge", pointer=f"{pointer}/{key}")
            # exactly one a_i and exactly one b_j  <=>  exactly one pair (a_i, b_j): if a_i, a_k and b_j held,
            # both (a_i, b_j) and (a_k, b_j) would; so two oneOfs merge into the oneOf of their pairs
            out[key] = [{"allOf": [x, y]} for x, y in pairs]
        elif key in a or key in b:
            out[key] = a[key] if key in a else b[key]


_ANNOTATING = ("anyOf", "oneOf", "if", "then", "else", "dependentSchemas", "patternProperties", "contains",
               "$dynamicRef", "$ref", "allOf")


def absorb_unevaluated(schema: dict) -> dict:
    """Rewrite unevaluatedProperties/Items as additionalProperties/items where that is exact.

    After ``$ref``/``allOf`` are merged, the properties a node evaluates are exactly its ``properties`` (and
    all of them if it has ``additionalProperties``); likewise ``prefixItems``/``items`` for array positions. This
    holds only without applicators whose annotations depend on which branch matched; those keep the keyword,
    and compiling it then raises UnsupportedSchemaFeature.
    """
    if any(k in schema for k in _ANNOTATING):
        return schema
    out = dict(schema)
    for word, plain in (("unevaluatedProperties", "additionalProperties"), ("unevaluatedItems", "items")):
        if word in out:
            value = out.pop(word)
            if plain not in out:
                out[plain] = value
    return out

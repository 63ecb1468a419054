"""Key-presence conditions: the parts of a schema that only ask which keys an object has.

``required``, ``properties`` whose schemas are ``true``/``false``, ``dependentRequired``, and ``not``, ``allOf``,
``anyOf``, ``oneOf``, ``if``/``then``/``else`` and ``dependentSchemas`` over such schemas say nothing but a
Boolean function of the set of keys present. With the keys in a fixed order, such a function is a finite-state
condition over the object's members (object_states.py walks it), so it is enforced exactly in the object
grammar instead of as a union of object branches (which one LALR(1) table cannot decide in general).

Beyond presence, ``properties: {k: {const/enum...}}`` asks whether k's value lies in a finite set: ``["val", k,
values]`` (value_classes.py splits k's value by such sets). A formula is JSON (it goes into the converter's
memo keys): ``["req", key]``, ``["not", f]``, ``["and", [fs]]``,
``["or", [fs]]``, ``["one", [fs]]`` (exactly one), ``["true"]``. Besides its formula over objects, a schema has a
truth value for every non-object instance (``required`` holds there vacuously, ``type: object`` does not).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lightllm_struct.grammar.errors import SchemaError, UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema.combinators import ANNOTATIONS
from lightllm_struct.grammar.json_schema.refs import escape_token
from lightllm_struct.grammar.json_schema.value_classes import set_key, value_set

if TYPE_CHECKING:
    from lightllm_struct.grammar.json_schema.converter import Converter

Formula = list
PRESENCE = "$lightllm:presence"  # internal keyword: a list of formulas every object must satisfy
TRUE: Formula = ["true"]
_APPLICATORS = ("anyOf", "oneOf", "not", "if", "then", "else")
MAX_DEPTH = 16
_TYPES = ("null", "boolean", "object", "array", "number", "integer", "string")


class NotPresence(Exception):
    """The schema says more than which keys are present."""


def evaluate(formula: Formula, present: Mapping[str, frozenset[str] | None]) -> bool:
    """``present``: for each key, None when absent, else the keys (value_classes.set_key) of the value sets
    its value lies in."""
    op = formula[0]
    if op == "true":
        return True
    if op == "req":
        return present[formula[1]] is not None
    if op == "val":
        inside = present[formula[1]]
        return inside is not None and set_key(formula[2]) in inside
    if op == "not":
        return not evaluate(formula[1], present)
    values = [evaluate(f, present) for f in formula[1]]
    return all(values) if op == "and" else any(values) if op == "or" else sum(values) == 1


def keys_of(formula: Formula) -> list[str]:
    """The keys a formula mentions, in first-mention order."""
    if formula[0] in ("req", "val"):
        return [formula[1]]
    if formula[0] == "not":
        return keys_of(formula[1])
    if formula[0] == "true":
        return []
    return list(dict.fromkeys(k for f in formula[1] for k in keys_of(f)))


def value_sets(formulas: list[Formula], key: str) -> list[list]:
    """The value sets the formulas test ``key``'s value against (distinct)."""
    out: dict[str, list] = {}
    stack = list(formulas)
    while stack:
        f = stack.pop()
        if f[0] == "val" and f[1] == key:
            out.setdefault(set_key(f[2]), f[2])
        elif f[0] == "not":
            stack.append(f[1])
        elif f[0] in ("and", "or", "one"):
            stack.extend(f[1])
    return list(out.values())


def implies(a: Formula, b: Formula) -> Formula:
    return ["or", [["not", a], b]]


def presence_of(conv: Converter, schema: Any, base: str, ptr: str = "", depth: int = 0) -> tuple[Formula, bool]:
    """(formula over objects, truth on non-objects) of a presence-only schema.

    Raises
    ------
    NotPresence : the schema constrains anything but key presence.
    """
    if schema is True:
        return TRUE, True
    if schema is False:
        return ["not", TRUE], False
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        raise NotPresence
    if "$ref" in schema:
        target = conv.resolver.resolve(schema["$ref"], base, pointer=f"{ptr}/$ref")
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return presence_of(conv, {"allOf": [target.schema, rest]}, target.base, ptr, depth + 1)
    parts: list[Formula] = []
    other = True
    for word, value in schema.items():
        if word in ANNOTATIONS or word.startswith("$lightllm") and word != PRESENCE:
            continue
        if word == "type":
            types = [value] if isinstance(value, str) else value
            if not isinstance(types, list) or set(types) not in ({"object"}, set(_TYPES), set(_TYPES) - {"integer"}):
                raise NotPresence  # a type that picks among non-objects is more than presence
            other = other and set(types) != {"object"}
        elif word == "required":
            if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
                raise NotPresence
            parts += [["req", k] for k in value]
        elif word == "properties":
            if not isinstance(value, dict):
                raise NotPresence
            for k, sub in value.items():
                values = value_set(sub)
                if sub is False:
                    parts.append(["not", ["req", k]])
                elif values is not None:  # present -> its value is one of these (value_classes.py)
                    parts.append(implies(["req", k], ["val", k, values]))
                elif sub is not True and sub != {} and set(sub) - ANNOTATIONS:
                    raise NotPresence
        elif word == "dependentRequired":
            if not isinstance(value, dict) or not all(isinstance(v, list) for v in value.values()):
                raise NotPresence
            parts += [implies(["req", a], ["and", [["req", b] for b in bs]]) for a, bs in value.items()]
        elif word == "dependentSchemas":
            if not isinstance(value, dict):
                raise NotPresence
            for a, sub in value.items():
                parts.append(implies(["req", a], presence_of(conv, sub, base, ptr, depth + 1)[0]))
        elif word in ("allOf", "anyOf", "oneOf"):
            if not isinstance(value, list) or not value:
                raise NotPresence
            subs = [presence_of(conv, s, base, ptr, depth + 1) for s in value]
            op = {"allOf": "and", "anyOf": "or", "oneOf": "one"}[word]
            parts.append([op, [f for f, _ in subs]])
            flags = [o for _, o in subs]
            other = other and (all(flags) if op == "and" else any(flags) if op == "or" else sum(flags) == 1)
        elif word == "not":
            f, o = presence_of(conv, value, base, ptr, depth + 1)
            parts.append(["not", f])
            other = other and not o
        elif word == "if":
            f_if, o_if = presence_of(conv, value, base, ptr, depth + 1)
            f_then, o_then = presence_of(conv, schema.get("then", True), base, ptr, depth + 1)
            f_else, o_else = presence_of(conv, schema.get("else", True), base, ptr, depth + 1)
            parts.append(["or", [["and", [f_if, f_then]], ["and", [["not", f_if], f_else]]]])
            other = other and (o_then if o_if else o_else)
        elif word in ("then", "else"):
            continue  # read with "if" (alone they mean nothing)
        elif word == PRESENCE:
            parts += value
        else:
            raise NotPresence
    return (parts[0] if len(parts) == 1 else ["and", parts] if parts else TRUE), other


def absorb(conv: Converter, schema: dict, base: str) -> dict:
    """``schema`` with its presence-only ``anyOf``/``oneOf``/``not``/``if`` turned into ``PRESENCE`` formulas
    (and its non-object types dropped where those fail them); unchanged where any of them says more."""
    words = [w for w in _APPLICATORS if w in schema]
    if "if" in schema and "then" not in schema and "else" not in schema:
        words.remove("if")  # a lone "if" asserts nothing
    if not any(w in words for w in ("anyOf", "oneOf", "not", "if")):
        return schema
    sub = {w: schema[w] for w in words}
    if "not" in sub and not isinstance(sub["not"], dict):
        return schema  # boolean not: the converter folds it
    try:
        formula, other = presence_of(conv, sub, base)
    except (NotPresence, SchemaError, UnsupportedSchemaFeature):
        return schema  # the usual path compiles it, or reports the error at its own pointer
    out = {k: v for k, v in schema.items() if k not in _APPLICATORS}
    out[PRESENCE] = list(out.get(PRESENCE, [])) + [formula]
    if not other:
        types = out.get("type", list(_TYPES))
        types = [types] if isinstance(types, str) else types
        out["type"] = ["object"]
        if "object" not in types:  # no instance at all
            out[PRESENCE].append(["not", TRUE])
    return out


def object_conditions(conv: Converter, schema: dict, base: str, ptr: str) -> list[Formula]:
    """The presence conditions an object node states: ``dependentRequired``, ``dependentSchemas`` (each must be
    presence-only) and what :func:`absorb` left in ``PRESENCE``.

    Raises
    ------
    SchemaError : a malformed keyword. UnsupportedSchemaFeature : a dependentSchemas entry that constrains
        values, not only which keys are present.
    """
    out: list[Formula] = list(schema.get(PRESENCE, []))
    deps = schema.get("dependentRequired", {})
    if not isinstance(deps, dict) or not all(isinstance(v, list) and all(isinstance(k, str) for k in v)
                                             for v in deps.values()):
        raise SchemaError("dependentRequired must map keys to arrays of strings", pointer=f"{ptr}/dependentRequired")
    out += [implies(["req", a], ["and", [["req", b] for b in bs]]) for a, bs in deps.items() if bs]
    subs = schema.get("dependentSchemas", {})
    if not isinstance(subs, dict):
        raise SchemaError("dependentSchemas must be an object", pointer=f"{ptr}/dependentSchemas")
    for a, sub in subs.items():
        try:
            formula = presence_of(conv, sub, base, f"{ptr}/dependentSchemas/{escape_token(a)}")[0]
        except NotPresence:
            raise UnsupportedSchemaFeature("dependentSchemas that constrains values (only conditions on which keys "
                                           "are present are supported)",
                                           pointer=f"{ptr}/dependentSchemas/{escape_token(a)}") from None
        if formula != TRUE:
            out.append(implies(["req", a], formula))
    return out

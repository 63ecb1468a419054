"""``if``/``then``/``else`` and value-constraining ``dependentSchemas`` as unions of disjoint alternatives.

``if S then T else E`` holds exactly when ``S ∧ T`` or ``¬S ∧ E`` holds; the two are disjoint (an instance
satisfies ``S`` or not), so the conditional is the ``anyOf`` of them with no exclusivity left to check, and
``¬S`` is written as positive schemas by negation.py (which refuses by pointer where no exact form exists).
``dependentSchemas: {k: D}`` is the conditional ``if {type: object, required: [k]} then D`` (a non-object, or
an object without ``k``, is not constrained: the ``type`` in the condition keeps ``D`` off non-objects, where
``required`` alone would hold vacuously). Entries that only ask which keys are present stay with the object
rules (presence.py), which need no union; the converter passes the others here. Several conditionals on one
node, and an ``anyOf`` beside them, combine as the product of their alternatives (the conjunction of unions).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightllm_struct.grammar.errors import UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema.refs import escape_token

CONDITION_WORDS = ("if", "then", "else")
MAX_PRODUCT = 64  # alternatives of one node after the product (as combinators.MAX_BRANCHES)


def has_conditional(schema: dict) -> bool:
    """Whether ``if`` asserts anything here (a lone ``if``, or ``then``/``else`` without it, say nothing)."""
    return "if" in schema and ("then" in schema or "else" in schema)


def if_alternatives(schema: dict) -> list[Any]:
    """The two disjoint alternatives of ``schema``'s ``if``/``then``/``else`` (``has_conditional`` holds)."""
    condition = schema["if"]
    return [_conj(condition, schema.get("then", True)), _conj({"not": condition}, schema.get("else", True))]


def dependent_alternatives(key: str, dependent: Any) -> list[Any]:
    """The two disjoint alternatives of ``dependentSchemas: {key: dependent}`` (``key`` declared first in the
    first, so that a union branch, which starts with its first required key, starts with it where the node
    declares no other key before it: the other alternative has no ``key`` at all)."""
    present = {"type": "object", "properties": {key: True}, "required": [key]}
    return [_conj(present, dependent), {"not": {"type": "object", "required": [key]}}]


def with_alternatives(schema: dict, alternatives: list[list[Any]], *, drop: tuple[str, ...],
                      pointer: str) -> dict:
    """``schema`` without the keywords ``drop``, with each list of ``alternatives`` (one per conditional) and
    its own ``anyOf``, if any, joined into one ``anyOf``: the product of all of them.

    Raises
    ------
    UnsupportedSchemaFeature : the product has more than ``MAX_PRODUCT`` alternatives.
    """
    out = {k: v for k, v in schema.items() if k not in drop}
    branches: list[Any] | None = list(out.pop("anyOf")) if "anyOf" in out else None
    for alts in alternatives:
        if branches is not None and len(branches) * len(alts) > MAX_PRODUCT:
            raise UnsupportedSchemaFeature("conditionals (if/then/else, dependentSchemas) need too many "
                                           "alternatives together", pointer=pointer)
        branches = list(alts) if branches is None else [_conj(b, a) for b in branches for a in alts]
    if branches is not None:
        out["anyOf"] = branches
    return out


def conditions_as_any_of(schema: dict, ptr: str, *,
                         presence_only: Callable[[str, Any], bool]) -> tuple[dict, str] | None:
    """``schema`` (at ``ptr``) with its ``if``/``then``/``else`` and the ``dependentSchemas`` entries that
    constrain values (``presence_only`` false) written as one ``anyOf`` of disjoint alternatives, and the
    pointer of the first of them (refusals inside the alternatives name it); None: it has neither."""
    alternatives, drop, where = [], [], []
    if has_conditional(schema):
        alternatives.append(if_alternatives(schema))
        drop += CONDITION_WORDS
        where.append(f"{ptr}/if")
    deps = schema.get("dependentSchemas")
    kept = {}
    if isinstance(deps, dict):
        for key, sub in deps.items():
            if presence_only(key, sub):  # stays with the object rules (no union needed)
                kept[key] = sub
                continue
            alternatives.append(dependent_alternatives(key, sub))
            where.append(f"{ptr}/dependentSchemas/{escape_token(key)}")
        if len(kept) < len(deps):
            drop.append("dependentSchemas")
    if not alternatives:
        return None
    out = with_alternatives(schema, alternatives, drop=tuple(drop), pointer=where[0])
    if kept and "dependentSchemas" in drop:
        out["dependentSchemas"] = kept
    return out, where[0]


def if_as_any_of(schema: dict, *, pointer: str) -> dict:
    """``schema`` with its ``if``/``then``/``else`` written as (the product with its) ``anyOf``."""
    return with_alternatives(schema, [if_alternatives(schema)], drop=CONDITION_WORDS, pointer=f"{pointer}/if")


def _conj(x: Any, y: Any) -> Any:
    if y is True or y == {}:
        return x
    if x is True or x == {}:
        return y
    return {"allOf": [x, y]}

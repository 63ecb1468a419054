"""``unsupported="report"``: compile without the keywords that cannot be enforced, and say which.

Opt-in best effort. Each refusal (UnsupportedSchemaFeature) names a keyword by JSON pointer; that keyword is
taken out of (a copy of) the normalized schema and the compile runs again, until it succeeds. The pointers
come back with the grammar, so nothing is dropped without the caller knowing. Only a refusal that names a
keyword present in the schema is answered this way: one naming a whole subschema (an empty language, a merge
of two constraints with no exact product) or none at all is raised as in the default mode. A non-disjoint
``oneOf`` loses only its exclusivity (it becomes ``anyOf``, reported under the ``oneOf`` pointer). Taking a
keyword out must widen the whole schema, never narrow it: under a ``not``, an ``if``, a ``oneOf`` branch or a
``contains`` bounded by ``maxContains`` it would not, so that construct is weakened first (polarity.py), and
keywords whose reach depends on the one taken out (``additionalProperties`` on ``properties``, ...) go with
it; a schema with ``unevaluatedProperties``/``unevaluatedItems`` is refused as in the default mode.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, TypeVar

from lightllm_struct.grammar.errors import UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema.polarity import Routes
from lightllm_struct.grammar.json_schema.refs import SCHEMA_LISTS, SCHEMA_MAPS, SCHEMA_SINGLE

UNSUPPORTED_MODES = ("refuse", "report")
MAX_DROPS = 64
# Keywords whose removal would change what other keywords mean rather than loosen one constraint.
_NEVER = frozenset({"$schema", "$id", "$defs", "definitions", "$anchor", "$dynamicAnchor", "type"})
# Keywords that apply where another one does not reach, or take a default that is no loosening: taking the
# first out widens or narrows the second's reach, so both go (minContains 0 without it means 1).
_BOUNDED = {"properties": ("additionalProperties",), "patternProperties": ("additionalProperties",),
            "prefixItems": ("items", "additionalItems"), "minContains": ("contains", "maxContains")}
T = TypeVar("T")


def compile_reporting(convert: Callable[[Any, dict[str, Any]], T], schema: Any,
                      documents: dict[str, Any]) -> tuple[T, tuple[str, ...]]:
    """``convert(schema, documents)``, retried without each keyword it refuses.

    Returns
    -------
    (result, pointers) : the conversion of the reduced schema and the JSON pointers of the keywords left out
        (in the normalized schema's terms; a preloaded document's as ``"<uri>#<pointer>"``), in order.

    Raises
    ------
    UnsupportedSchemaFeature : a refusal that names no keyword, or more than ``MAX_DROPS`` of them.
    """
    schema, documents = copy.deepcopy(schema), copy.deepcopy(documents)
    dropped: list[str] = []
    renamed: dict[str, str] = {}  # pointer of an anyOf made from a oneOf -> the oneOf's pointer
    while True:
        try:
            return convert(schema, documents), tuple(dropped)
        except UnsupportedSchemaFeature as exc:
            if len(dropped) >= MAX_DROPS or not exc.pointer or _has_unevaluated(schema) \
                    or _has_unevaluated(documents):
                raise  # (unevaluated*: any keyword taken out could leave more to them, which is no loosening)
            routes = Routes(schema, documents)
            outer = routes.governing(exc.pointer.rsplit("/", 1)[0])
            if not outer and routes.uncertain:
                raise
            # a keyword under a not/if/oneOf/contains-with-maxContains is loosened by weakening that construct
            # first; the keyword itself is taken out only where every route to it counts for the instance
            pointer = min((p for p in outer if p is not None), default=exc.pointer)
            place = _locate(schema, documents, pointer)
            if place is None:
                raise
            _take_out(*place, pointer, dropped, renamed)


def _take_out(parent: dict, key: str, pointer: str, dropped: list[str], renamed: dict[str, str]) -> None:
    """Take keyword ``key`` out of ``parent`` (``pointer`` names it), with the keywords whose meaning it
    bounds (``additionalProperties`` applies to what ``properties`` does not name, ...), and report them."""
    node = pointer[:-len(key)]
    reported = renamed.get(pointer, pointer)
    if key == "oneOf" and "anyOf" not in parent:
        parent["anyOf"] = parent.pop("oneOf")
        renamed[f"{node}anyOf"] = reported
    else:
        del parent[key]
    words = [reported] + [f"{node}{word}" for word in _BOUNDED.get(key, ()) if parent.get(word, True) not in (True, {})]
    for word in _BOUNDED.get(key, ()):
        parent.pop(word, None)
    dropped.extend(w for w in words if w not in dropped)


def _has_unevaluated(value: Any) -> bool:
    if isinstance(value, dict):
        return any(value.get(k) not in (None, True, {}) for k in ("unevaluatedProperties", "unevaluatedItems")) \
            or any(_has_unevaluated(v) for v in value.values())
    return isinstance(value, list) and any(_has_unevaluated(v) for v in value)


def _locate(schema: Any, documents: dict[str, Any], pointer: str) -> tuple[dict, str] | None:
    """The dict holding the keyword named by ``pointer`` and the keyword, or None."""
    doc = schema
    if "#" in pointer:  # "<uri>#<pointer>": a keyword of a preloaded document
        uri, pointer = pointer.split("#", 1)
        doc = next((d for u, d in documents.items() if u.split("#", 1)[0] == uri), None)
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
    if not tokens or doc is None:
        return None
    node, kind = doc, "schema"  # what node is: a schema, a map or list of schemas, or keyword data
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
        if kind == "schema":
            kind = "map" if token in SCHEMA_MAPS else "list" if token in SCHEMA_LISTS else \
                "schema" if token in SCHEMA_SINGLE else "data"
        elif kind in ("map", "list"):
            kind = "schema"
    # only a keyword of a schema, never a property (a subschema) of "properties" or the like
    if kind != "schema" or not isinstance(node, dict) or tokens[-1] not in node or tokens[-1] in _NEVER:
        return None
    return node, tokens[-1]

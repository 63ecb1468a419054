"""``unsupported="report"``: compile without the keywords that cannot be enforced, and say which.

Opt-in best effort. Each refusal (UnsupportedSchemaFeature) names a keyword by JSON pointer; that keyword is
taken out of (a copy of) the normalized schema and the compile runs again, until it succeeds. The pointers
come back with the grammar, so nothing is dropped without the caller knowing. Only a refusal that names a
keyword present in the schema is answered this way: one naming a whole subschema (an empty language, a merge
of two constraints with no exact product) or none at all is raised as in the default mode. A non-disjoint
``oneOf`` loses only its exclusivity (it becomes ``anyOf``, reported under the ``oneOf`` pointer).
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, TypeVar

from lightllm_struct.grammar.errors import UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema.refs import SCHEMA_LISTS, SCHEMA_MAPS, SCHEMA_SINGLE

UNSUPPORTED_MODES = ("refuse", "report")
MAX_DROPS = 64
# Keywords whose removal would change what other keywords mean rather than loosen one constraint.
_NEVER = frozenset({"$schema", "$id", "$defs", "definitions", "$anchor", "$dynamicAnchor", "type"})
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
            if len(dropped) >= MAX_DROPS:
                raise
            place = _locate(schema, documents, exc.pointer)
            if place is None:
                raise
            parent, key = place
            reported = renamed.get(exc.pointer, exc.pointer)
            if key == "oneOf" and "anyOf" not in parent:
                parent["anyOf"] = parent.pop("oneOf")
                renamed[exc.pointer[:-len("oneOf")] + "anyOf"] = reported
            else:
                del parent[key]
            if reported not in dropped:
                dropped.append(reported)


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

"""Drafts 4, 6, 7, 2019-09 and 2020-12: each read with its own semantics, rewritten into 2020-12 form.

The converter speaks draft 2020-12. A schema of another draft is rewritten, subschema by subschema, into the
2020-12 schema with the same instances: draft-04 ``id`` and boolean ``exclusiveMinimum``/``exclusiveMaximum``,
tuple ``items`` with ``additionalItems`` (drafts 4 to 2019-09), ``dependencies`` (drafts 4 to 7), ``$ref``
overriding its siblings (drafts 4 to 7), ``$recursiveRef`` (2019-09), and keywords a draft does not have
dropped (an unknown keyword is an annotation there). The draft comes from ``$schema`` (a nested resource may
switch it); without one it is 2020-12, except that forms 2020-12 does not allow (a boolean
``exclusiveMinimum``, an ``items`` array, ``dependencies``, ``id``) keep their old meaning, since no other
reading exists. Unknown keywords are kept in place (a ``$ref`` may point into them) and ignored by the
converter; ``strict=True`` refuses them instead.
"""
from __future__ import annotations

import re

from collections import Counter
from typing import Any

from lightllm_struct.grammar.errors import SchemaError, UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema.refs import escape_token

DRAFTS = ("draft4", "draft6", "draft7", "draft2019-09", "draft2020-12")
_BY_URI = {
    "json-schema.org/draft-04/schema": "draft4", "json-schema.org/draft-06/schema": "draft6",
    "json-schema.org/draft-07/schema": "draft7", "json-schema.org/draft/2019-09/schema": "draft2019-09",
    "json-schema.org/draft/2020-12/schema": "draft2020-12", "json-schema.org/schema": "draft2020-12",
}
LATEST = "https://json-schema.org/draft/2020-12/schema"
# draft-04's "integer" has no fraction at all (2.0 is a number there, an integer from draft-06 on): the
# rewritten node carries this internal keyword, and scalars.py writes its integers without ".0".
INTEGER_SYNTAX = "$lightllm:integerSyntax"

_CORE = {"$schema", "$id", "$ref", "$comment", "$defs", "definitions", "title", "description", "default",
         "examples", "enum", "type", "allOf", "anyOf", "oneOf", "not", "multipleOf", "maximum", "minimum",
         "exclusiveMaximum", "exclusiveMinimum", "maxLength", "minLength", "pattern", "items", "maxItems",
         "minItems", "uniqueItems", "maxProperties", "minProperties", "required", "properties",
         "patternProperties", "additionalProperties", "format", "nullable"}
_D6 = _CORE | {"const", "contains", "propertyNames"}
_D7 = _D6 | {"if", "then", "else", "readOnly", "writeOnly", "contentMediaType", "contentEncoding"}
_D2019 = _D7 | {"$anchor", "$recursiveRef", "$recursiveAnchor", "$vocabulary",
                                  "dependentRequired", "dependentSchemas", "minContains", "maxContains",
                                  "unevaluatedItems", "unevaluatedProperties", "deprecated", "contentSchema"}
_D2020 = _D2019 - {"$recursiveRef", "$recursiveAnchor"} | {"prefixItems", "$dynamicRef", "$dynamicAnchor"}
KEYWORDS = {"draft4": _CORE | {"id", "additionalItems", "dependencies"},
            "draft6": _D6 | {"additionalItems", "dependencies"}, "draft7": _D7 | {"additionalItems", "dependencies"},
            "draft2019-09": _D2019 | {"additionalItems"}, "draft2020-12": _D2020}
# What a schema without $schema may use: 2020-12 plus the old forms that have no other reading.
_LEGACY = _D2020 | {"id", "additionalItems", "dependencies"}

_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_LISTS = ("prefixItems", "allOf", "anyOf", "oneOf")
_SINGLE = ("additionalProperties", "not", "contains", "propertyNames", "if", "then", "else",
           "unevaluatedItems", "unevaluatedProperties", "contentSchema", "additionalItems")


def dialect_of(uri: Any, default: str, pointer: str) -> str:
    """The draft named by a ``$schema`` value (``default`` when absent)."""
    if uri is None:
        return default
    if not isinstance(uri, str):
        raise SchemaError("$schema must be a string", pointer=f"{pointer}/$schema")
    bare = uri.split("://", 1)[-1].split("#", 1)[0].rstrip("/")
    if bare not in _BY_URI:
        raise UnsupportedSchemaFeature(f"$schema {uri!r} is not a JSON Schema draft this engine reads (known: "
                                       "draft-04, 06, 07, 2019-09, 2020-12)", pointer=f"{pointer}/$schema")
    return _BY_URI[bare]


def normalize(schema: Any, *, draft: str | None = None, strict: bool = False) -> Any:
    """``schema`` (any draft) as the equivalent draft 2020-12 document.

    Parameters
    ----------
    draft : the draft to read a schema without ``$schema`` as (one of DRAFTS); None: 2020-12 plus old forms.
    strict : refuse unknown keywords (``x-`` extensions excepted) instead of ignoring them.

    Raises
    ------
    SchemaError : a bad ``$schema`` value. UnsupportedSchemaFeature : an unknown draft; under ``strict``, an
        unknown keyword (with its pointer).
    """
    if draft is not None and draft not in DRAFTS:
        raise ValueError(f"draft must be one of {DRAFTS}, got {draft!r}")
    root_draft = dialect_of(schema.get("$schema") if isinstance(schema, dict) else None, draft or "legacy", "")
    out = _Rewriter(strict, _anchor_counts(schema)).walk(schema, root_draft, "")
    if isinstance(out, dict):
        out["$schema"] = LATEST
    return out


def _anchor_counts(schema: Any, counts: Counter | None = None) -> Counter:
    """How often each dynamic anchor occurs (``$recursiveAnchor: true`` counted under the name True).

    A dynamic reference whose anchor occurs once can only ever resolve to it: it is a plain ``$ref``.
    """
    counts = Counter() if counts is None else counts
    if isinstance(schema, dict):
        if schema.get("$recursiveAnchor") is True:
            counts[True] += 1
        if isinstance(schema.get("$dynamicAnchor"), str):
            counts[schema["$dynamicAnchor"]] += 1
        for value in schema.values():
            _anchor_counts(value, counts)
    elif isinstance(schema, list):
        for value in schema:
            _anchor_counts(value, counts)
    return counts


class _Rewriter:
    def __init__(self, strict: bool, anchors: Counter) -> None:
        self.strict = strict
        self.anchors = anchors

    def walk(self, schema: Any, draft: str, ptr: str) -> Any:
        if not isinstance(schema, dict):
            return schema
        if ptr:
            draft = dialect_of(schema.get("$schema"), draft, ptr) if "$id" in schema or "id" in schema else draft
        known = _LEGACY if draft == "legacy" else KEYWORDS[draft]
        node = {k: v for k, v in schema.items() if k in known or k.startswith("x-") and not self.strict}
        if self.strict:
            for key in schema:
                if key not in known and not key.startswith("x-"):
                    raise UnsupportedSchemaFeature(f"unknown keyword {key!r} (strict)",
                                                   pointer=f"{ptr}/{escape_token(key)}")
        # Unknown keywords stay (a $ref may point into them) unless 2020-12 gives their name a meaning.
        kept = {k: v for k, v in schema.items() if k not in node and k not in _D2020}
        if draft in ("draft4", "draft6", "draft7") and "$ref" in node:
            node = {"$ref": node["$ref"], **{k: v for k, v in node.items() if k in ("definitions", "$defs")}}
        node = self._legacy_forms(node, draft, ptr)
        for key in _MAPS:
            if isinstance(node.get(key), dict):
                node[key] = {n: self.walk(s, draft, f"{ptr}/{key}/{escape_token(n)}") for n, s in node[key].items()}
        for key in _LISTS:
            if isinstance(node.get(key), list):
                node[key] = [self.walk(s, draft, f"{ptr}/{key}/{i}") for i, s in enumerate(node[key])]
        for key in _SINGLE + ("items",):
            if key in node:
                node[key] = self.walk(node[key], draft, f"{ptr}/{key}")
        node.pop("$schema", None)
        return {**{k: v for k, v in kept.items() if k != "$schema"}, **node} if kept else node

    def _legacy_forms(self, node: dict, draft: str, ptr: str) -> dict:
        if draft == "draft4" and "integer" in (node.get("type") if isinstance(node.get("type"), list)
                                               else [node.get("type")]):
            node[INTEGER_SYNTAX] = True
        if draft != "draft2020-12":
            _ident(node, draft)
            _bool_exclusive(node)
            _tuple_items(node)
            _dependencies(node)
        for word, anchor in (("$recursiveRef", True), ("$dynamicRef", None)):
            if word in node:
                target = node[word]
                name = anchor if anchor is not None else str(target).rsplit("#", 1)[-1]
                if anchor is not None and target != "#" or self.anchors[name] > 1:
                    raise UnsupportedSchemaFeature(f"{word} whose anchor occurs more than once (dynamic scope)",
                                                   pointer=f"{ptr}/{word}")
                del node[word]
                node = {"allOf": [node, {"$ref": target}]} if "$ref" in node else {**node, "$ref": target}
        node.pop("$recursiveAnchor", None)
        return node


_ANCHOR_NAME = re.compile(r"[A-Za-z_][-A-Za-z0-9._]*")


def _ident(node: dict, draft: str) -> None:
    """draft-04 ``id``; ``id``/``$id`` of only a fragment (draft 4 to 7) is an anchor. A ``$id`` in a draft-04
    schema is no keyword of that draft: an annotation, which changes no base URI."""
    if draft == "draft4":
        node.pop("$id", None)
    if "id" in node and draft in ("draft4", "legacy") and "$id" not in node and isinstance(node["id"], str):
        node["$id"] = node.pop("id")
    node.pop("id", None)
    ident = node.get("$id")
    if isinstance(ident, str) and ident.startswith("#") and not _ANCHOR_NAME.fullmatch(ident[1:]):
        node.pop("$id")  # "#" or a JSON pointer ("#/definitions/x", often the node's own place): names no anchor
        return
    if isinstance(ident, str) and ident.startswith("#") and "$anchor" not in node:
        node.pop("$id")
        node["$anchor"] = ident[1:]
    elif isinstance(ident, str) and "#" in ident:
        node["$id"] = ident.split("#", 1)[0]


def _bool_exclusive(node: dict) -> None:
    for word, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        flag = node.get(word)
        if isinstance(flag, bool):
            del node[word]
            if flag and bound in node:
                node[word] = node.pop(bound)


def _tuple_items(node: dict) -> None:
    items = node.get("items")
    extra = node.pop("additionalItems", None)
    if isinstance(items, list):
        node["prefixItems"] = items
        del node["items"]
        if extra is not None:
            node["items"] = extra


def _dependencies(node: dict) -> None:
    deps = node.pop("dependencies", None)
    if not isinstance(deps, dict):
        return
    required = {k: v for k, v in deps.items() if isinstance(v, list)}
    schemas = {k: v for k, v in deps.items() if not isinstance(v, list)}
    if required:
        node["dependentRequired"] = {**node.get("dependentRequired", {}), **required}
    if schemas:
        node["dependentSchemas"] = {**node.get("dependentSchemas", {}), **schemas}

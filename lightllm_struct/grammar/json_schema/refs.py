"""``$ref`` resolution inside one schema document: JSON pointers, ``$id`` resources and ``$anchor`` names.

References leaving the document are never fetched (no network or file access while compiling): they resolve
only into the documents the caller preloaded (``documents``: URI -> schema), else UnsupportedSchemaFeature;
references into a known document that lead nowhere raise SchemaError. Recursion is handled by the converter (it
names a rule per resolved target before compiling it), not here.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin

import referencing
from referencing.jsonschema import DRAFT202012

from lightllm_struct.grammar.errors import SchemaError, UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema.schema_check import check_schema

DEFAULT_BASE = "https://lightllm-struct.invalid/schema.json"
# Keywords whose values are subschemas (dict of, list of, or single): walked to find $id and $anchor.
SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
SCHEMA_LISTS = ("prefixItems", "allOf", "anyOf", "oneOf")
SCHEMA_SINGLE = ("items", "additionalProperties", "not", "contains", "propertyNames", "if", "then", "else",
                  "unevaluatedItems", "unevaluatedProperties", "contentSchema")


def join(base: str, ref: str) -> str:
    """``ref`` resolved against ``base``; also for URNs, which urljoin does not treat as hierarchical."""
    if ref.startswith("#"):
        return urldefrag(base)[0] + ref
    return urljoin(base, ref)


def preloaded_registry(documents: Mapping[str, Any]) -> referencing.Registry:
    """A ``referencing`` registry of the preloaded documents (for jsonschema checks of enum/const values); it
    retrieves nothing else, so jsonschema never fetches either."""
    return referencing.Registry().with_resources(
        (urldefrag(join(DEFAULT_BASE, uri))[0],
         referencing.Resource.from_contents(doc, default_specification=DRAFT202012)) for uri, doc in documents.items())


def escape_token(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


@dataclass(frozen=True)
class Target:
    """A resolved reference: the subschema, the base URI in force there, and its JSON pointer (for errors)."""

    schema: Any
    base: str
    pointer: str


class RefResolver:
    """Index of one document's resources (``$id``) and anchors; resolves ``$ref`` values against a base."""

    def __init__(self, root: Any, *, documents: Mapping[str, Any] | None = None) -> None:
        self.root = root
        root_id = root.get("$id") if isinstance(root, dict) else None
        self.root_base = urldefrag(join(DEFAULT_BASE, root_id))[0] if isinstance(root_id, str) else DEFAULT_BASE
        self._resources: dict[str, Target] = {}
        self._anchors: dict[str, Target] = {}
        self._checked: set[int] = set()  # ids of fragment targets checked against the metaschema
        self._index(root, self.root_base, "")
        for uri, doc in (documents or {}).items():
            # A preloaded document's places are named "<uri>#<pointer>" in errors and reports.
            base = urldefrag(join(DEFAULT_BASE, uri))[0]
            self._index(doc, base, f"{base}#")
            self._resources.setdefault(base, Target(doc, self.base_of(doc, base), f"{base}#"))

    def base_of(self, schema: Any, base: str) -> str:
        """The base URI inside ``schema`` (its own ``$id`` re-bases it)."""
        if isinstance(schema, dict) and isinstance(schema.get("$id"), str):
            return urldefrag(join(base, schema["$id"]))[0]
        return base

    def _index(self, schema: Any, base: str, pointer: str) -> None:
        if not isinstance(schema, dict):
            return
        base = self.base_of(schema, base)
        self._resources.setdefault(base, Target(schema, base, pointer))
        for key in ("$anchor", "$dynamicAnchor"):
            if isinstance(schema.get(key), str):
                self._anchors.setdefault(f"{base}#{schema[key]}", Target(schema, base, pointer))
        for key in SCHEMA_MAPS:
            if isinstance(schema.get(key), dict):
                for name, sub in schema[key].items():
                    self._index(sub, base, f"{pointer}/{key}/{escape_token(name)}")
        for key in SCHEMA_LISTS:
            if isinstance(schema.get(key), list):
                for i, sub in enumerate(schema[key]):
                    self._index(sub, base, f"{pointer}/{key}/{i}")
        for key in SCHEMA_SINGLE:
            self._index(schema.get(key), base, f"{pointer}/{key}")

    def resolve(self, ref: Any, base: str, *, pointer: str) -> Target:
        """Resolve the ``$ref`` value found at ``pointer`` (which is the ``$ref`` keyword's own pointer).

        Raises
        ------
        SchemaError : not a string, or a fragment that does not resolve inside the document.
        UnsupportedSchemaFeature : a reference to a document that is neither this one nor preloaded.
        """
        if not isinstance(ref, str):
            raise SchemaError("$ref must be a string", pointer=pointer)
        uri, fragment = urldefrag(join(base, ref))
        resource = self._resources.get(uri)
        if resource is None:
            raise UnsupportedSchemaFeature(f"$ref {ref!r} points outside this schema (remote references are "
                                           "never fetched; pass documents={uri: schema})", pointer=pointer)
        if not fragment:
            return resource
        if not fragment.startswith("/"):
            anchor = self._anchors.get(f"{uri}#{fragment}")
            if anchor is None:
                raise SchemaError(f"$ref {ref!r}: no $anchor {fragment!r}", pointer=pointer)
            return anchor
        return self._walk(resource, unquote(fragment), ref, pointer)

    def _walk(self, resource: Target, fragment: str, ref: str, pointer: str) -> Target:
        node, path, base = resource.schema, resource.pointer, resource.base
        tokens = [raw.replace("~1", "/").replace("~0", "~") for raw in fragment.split("/")[1:]]
        for i, token in enumerate(tokens):
            if isinstance(node, dict):
                token = _legacy_name(node, token, tokens[i + 1] if i + 1 < len(tokens) else None)
            if isinstance(node, dict) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                raise SchemaError(f"$ref {ref!r} does not resolve (no {token!r})", pointer=pointer)
            path = f"{path}/{escape_token(token)}"
            if isinstance(node, dict) and isinstance(node.get("$id"), str):
                base = self.base_of(node, base)
        if not isinstance(node, (dict, bool)):
            raise SchemaError(f"$ref {ref!r} points at a {type(node).__name__}, not a schema", pointer=pointer)
        if isinstance(node, dict) and id(node) not in self._checked:
            # A fragment may point where no schema is (``#/properties``: a map of names), which the check of
            # the whole document never read as one: checked here, once a node (a wrong-typed ``pattern`` in
            # such a map once raised TypeError deep in the converter).
            try:
                check_schema(node)
            except SchemaError as exc:
                raise SchemaError(f"$ref {ref!r} points at an invalid schema ({exc.message})",
                                  pointer=pointer) from None
            self._checked.add(id(node))
        return Target(node, base, path)


def _legacy_name(node: dict, token: str, following: str | None) -> str:
    """The keyword a draft 4-2019-09 pointer token names after dialects.py rewrote the node into 2020-12
    (``items`` arrays became ``prefixItems``, ``additionalItems`` became ``items``, ``dependencies`` split into
    ``dependentSchemas``/``dependentRequired``); ``token`` itself where the node has no such rewrite."""
    prefix = isinstance(node.get("prefixItems"), list)
    if token == "items" and prefix and following is not None and following.isdigit() \
            and not isinstance(node.get("items"), list):
        return "prefixItems"
    if token == "additionalItems" and "additionalItems" not in node and prefix:
        return "items"
    if token == "dependencies" and "dependencies" not in node:
        for word in ("dependentSchemas", "dependentRequired"):
            if isinstance(node.get(word), dict) and following in node[word]:
                return word
    return token

"""Which constructs decide whether taking a keyword out of a subschema loosens the whole schema.

Taking a keyword out of a subschema widens what that subschema accepts. The whole schema then accepts more
only where the subschema counts *for* an instance on every route from the root (``allOf``/``anyOf`` branches,
``properties``, ``items``, ``then``, a ``$ref`` target used so, ...). Under ``not`` a wider subschema rejects
more; a wider ``oneOf`` branch overlaps more branches, so exactly-one fails more often; a wider ``if`` moves
instances from ``else`` to ``then``; a wider ``contains`` counts more items against ``maxContains``. For
each route this module names the outermost such construct (the one whose own context still counts for the
instance): taking *that* out (a ``not``, an ``if``, a ``maxContains``) or weakening it (``oneOf`` to
``anyOf``) is a loosening, and the keyword below it may be taken out afterwards.
"""
from __future__ import annotations

from typing import Any

from lightllm_struct.grammar.errors import GrammarError
from lightllm_struct.grammar.json_schema.refs import RefResolver, escape_token

# Subschemas that count for the instance as their parent does (in place or at a child location).
_SAME_MAPS = ("properties", "patternProperties", "dependentSchemas", "dependencies")
_SAME_LISTS = ("prefixItems", "allOf", "anyOf")
_SAME_SINGLE = ("items", "additionalItems", "additionalProperties", "propertyNames", "then", "else",
                "unevaluatedItems", "unevaluatedProperties", "contentSchema")
_REFS = ("$ref", "$dynamicRef", "$recursiveRef")


class Routes:
    """For every subschema reachable from the root: the outermost construct of each route to it that does not
    count for the instance (its keyword's JSON pointer), or None for a route on which everything does.

    ``uncertain`` is set when a reference could not be followed (the converter raises for it anyway, or it sits
    under a construct already counted): a place no route reaches is then not known to be harmless.
    """

    def __init__(self, schema: Any, documents: dict[str, Any]) -> None:
        self.resolver = RefResolver(schema, documents=documents)
        self.outer: dict[str, set[str | None]] = {}
        self.uncertain = False
        self._visit(schema, self.resolver.root_base, "", None)

    def governing(self, pointer: str) -> set[str | None]:
        """The constructs governing the subschema at ``pointer`` (an empty set: no route reaches it)."""
        return self.outer.get(pointer, set())

    def _visit(self, schema: Any, base: str, pointer: str, outer: str | None) -> None:
        seen = self.outer.setdefault(pointer, set())
        if outer in seen or not isinstance(schema, dict):
            seen.add(outer)
            return
        seen.add(outer)
        base = self.resolver.base_of(schema, base)
        for key in _SAME_MAPS:
            if isinstance(schema.get(key), dict):
                for name, sub in schema[key].items():
                    self._visit(sub, base, f"{pointer}/{key}/{escape_token(name)}", outer)
        for key in (*_SAME_LISTS, "oneOf"):
            if isinstance(schema.get(key), list):
                inner = outer or (f"{pointer}/oneOf" if key == "oneOf" else None)
                for i, sub in enumerate(schema[key]):
                    self._visit(sub, base, f"{pointer}/{key}/{i}", inner)
        for key in _SAME_SINGLE:
            if key in schema:
                self._visit(schema[key], base, f"{pointer}/{key}", outer)
        for key in ("not", "if"):
            if key in schema:
                self._visit(schema[key], base, f"{pointer}/{key}", outer or f"{pointer}/{key}")
        if "contains" in schema:
            counted = outer or (f"{pointer}/maxContains" if "maxContains" in schema else None)
            self._visit(schema["contains"], base, f"{pointer}/contains", counted)
        for key in _REFS:
            if key in schema:
                try:
                    target = self.resolver.resolve(schema[key], base, pointer=f"{pointer}/{key}")
                except GrammarError:
                    self.uncertain = True
                    continue
                self._visit(target.schema, target.base, target.pointer, outer)

"""JSON Schema (draft 2020-12) -> Lark grammar text for the LALR(1) core of the grammar engine.

One rule per distinct (base URI, schema) pair, named before its body is compiled, so recursive ``$ref``s
terminate. A schema node compiles in this order: ``$ref`` (with siblings: merged), ``allOf`` (merged), ``enum`` /
``const`` (the listed values that validate against the whole node, so every sibling keyword is exact),
``anyOf`` / ``oneOf`` (each branch merged with the node's other keywords), then one alternative per JSON type.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jsonschema

from lightllm_struct.grammar.errors import SchemaError, UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema import scalars
from lightllm_struct.grammar.json_schema.builder import KINDS, NOTHING, GrammarBuilder, Piece
from lightllm_struct.grammar.json_schema.combinators import (ANNOTATIONS, MORE_PATTERNS, NON_INTEGRAL, NOT_MULTIPLES,
                                                              NOT_PATTERNS, Unsatisfiable, absorb_unevaluated,
                                                              as_jsonschema, merge)
from lightllm_struct.grammar.json_schema.arrays import compile_array
from lightllm_struct.grammar.json_schema.objects import compile_object
from lightllm_struct.grammar.json_schema.values import const_piece
from lightllm_struct.grammar.json_schema.conditionals import conditions_as_any_of
from lightllm_struct.grammar.json_schema.dialects import INTEGER_SYNTAX
from lightllm_struct.grammar.json_schema.disjoint import check_disjoint
from lightllm_struct.grammar.json_schema.exclusive import exclusive_branches, first_match_branches
from lightllm_struct.grammar.json_schema.negation import Negator
from lightllm_struct.grammar.json_schema.presence import PRESENCE, NotPresence, absorb, presence_of
from lightllm_struct.grammar.json_schema.refs import RefResolver, escape_token, preloaded_registry
from lightllm_struct.grammar.json_schema.unevaluated import WORDS, as_cases, needs_cases

TYPE_KEYWORDS = {
    "null": (),
    "boolean": (),
    "number": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"),
    "string": ("minLength", "maxLength", "pattern", "format"),
    "array": ("items", "prefixItems", "minItems", "maxItems", "uniqueItems", "contains", "minContains",
              "maxContains", "unevaluatedItems"),
    "object": ("properties", "required", "additionalProperties", "patternProperties", "propertyNames",
               "minProperties", "maxProperties", "dependentRequired", "dependentSchemas", "unevaluatedProperties"),
}
_GENERIC = {"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "nullable", "not", "if", "then", "else"}
KNOWN_KEYWORDS = _GENERIC | ANNOTATIONS | {k for ks in TYPE_KEYWORDS.values() for k in ks} | {INTEGER_SYNTAX,
                                                                                           MORE_PATTERNS, PRESENCE, NOT_PATTERNS,
                                                                                           NON_INTEGRAL, NOT_MULTIPLES}
JSON_TYPES = ("null", "boolean", "object", "array", "number", "integer", "string")
MAX_MERGE_DEPTH = 64


def known_only(schema: dict) -> dict:
    """``schema`` without unknown keywords: annotations, as the specification says (dialects.py has
    refused them already under ``strict``, and rewritten every draft's keywords into 2020-12's)."""
    if all(k in KNOWN_KEYWORDS for k in schema):
        return schema
    return {k: v for k, v in schema.items() if k in KNOWN_KEYWORDS}


class Converter:
    """Compiles one schema document into a :class:`GrammarBuilder`."""

    def __init__(self, root: Any, *, whitespace: str, literal_escapes: str = "canonical",
                 assert_formats: bool = True, documents: dict[str, Any] | None = None,
                 disjoint_any_of: bool = False) -> None:
        self.root = root
        self.builder = GrammarBuilder(whitespace=whitespace, literal_escapes=literal_escapes,
                                      assert_formats=assert_formats)
        self.documents = documents or {}
        self.resolver = RefResolver(root, documents=self.documents)
        self._memo: dict[tuple[str, str], Piece] = {}
        self._validator: jsonschema.protocols.Validator | None = None
        self.union_pointers: list[str] = []
        self._referenced: set[str] = set()
        # Per compile() frame: whether an object compiled here is a branch of a union of objects (then it must
        # start with its first required property, see objects.compile_object).
        self.lead_required: list[bool] = [False]
        self._union_mode = False
        # anyOf as disjoint alternatives (exclusive.first_match_branches), where the plain unions were not LALR(1)
        self.disjoint_any_of = disjoint_any_of

    def compile(self, schema: Any, base: str, ptr: str) -> Piece:
        """Compile the subschema found at ``ptr`` (``base``: the URI relative references resolve against)."""
        if schema is True:
            return self.builder.any_json()
        if schema is False:
            return NOTHING
        if not isinstance(schema, dict):
            raise SchemaError("a schema must be an object or a boolean", pointer=ptr)
        base = self.resolver.base_of(schema, base)
        schema = known_only(schema)
        mode, self._union_mode = self._union_mode, False  # only the branch itself, never its children
        key = (base, json.dumps(schema, sort_keys=True) + ("|union" if mode else ""))
        known = self._lookup(key)
        if known is not None:
            return known
        self.lead_required.append(mode)
        try:
            return self._compile_named(schema, base, ptr, key)
        finally:
            self.lead_required.pop()

    def _compile_named(self, schema: dict, base: str, ptr: str, key: tuple[str, str]) -> Piece:
        name = self.builder.new_rule("s")
        # Recursive references see the rule name; what it can produce is unknown until compiled, so all kinds.
        self._memo[key] = Piece(name, None, KINDS)
        self._referenced.discard(name)
        try:
            piece = self._compile_node(schema, base, ptr, depth=0)
        except SchemaError:  # (a caller may try another form: no placeholder for a rule never defined)
            del self._memo[key]
            raise
        if name in self._referenced:  # a recursive reference used the name: it must be defined
            if piece.sym is None:
                raise UnsupportedSchemaFeature("a recursive schema that accepts no instance", pointer=ptr)
            self.builder.set_rule(name, [piece.sym])
        self._memo[key] = piece
        return piece

    def _lookup(self, key: tuple[str, str]) -> Piece | None:
        piece = self._memo.get(key)
        if piece is not None and piece.sym is not None and piece.sym not in self.builder.rules:
            self._referenced.add(piece.sym)
        return piece

    def _compile_node(self, schema: dict, base: str, ptr: str, *, depth: int) -> Piece:
        try:
            return self._compile_merged(schema, base, ptr, depth=depth)
        except Unsatisfiable:
            return NOTHING

    def _compile_merged(self, schema: dict, base: str, ptr: str, *, depth: int) -> Piece:
        if depth > MAX_MERGE_DEPTH:
            raise UnsupportedSchemaFeature("allOf/$ref merging nests too deep", pointer=ptr)
        if "$ref" in schema:
            target = self.resolver.resolve(schema["$ref"], base, pointer=f"{ptr}/$ref")
            rest = {k: v for k, v in schema.items() if k != "$ref" and k not in ANNOTATIONS}
            if not rest:
                return self.compile(target.schema, target.base, target.pointer)
            if target.schema is False:
                return NOTHING
            if target.base != base and "$ref" in json.dumps(target.schema):
                raise UnsupportedSchemaFeature("$ref with sibling keywords across $id scopes", pointer=ptr)
            # The node's own keywords first: its own properties then come first in the merged order.
            merged = rest if target.schema is True else merge(rest, self._flat(target.schema, target.base, ptr,
                                                                               depth), pointer=ptr)
            return self._compile_node(merged, base, ptr, depth=depth + 1)
        if "allOf" in schema:
            return self._compile_node(self._flat(schema, base, ptr, depth), base, ptr, depth=depth + 1)
        flat = absorb_unevaluated(schema)
        if needs_cases(flat):  # unevaluated* whose reach depends on applicators: a union of cases
            word = next(w for w in WORDS if flat.get(w, True) not in (True, {}))
            return self._renamed(lambda: self._compile_node(as_cases(flat, self._flattener(base), ptr), base, ptr,
                                                            depth=depth + 1), ptr, f"{ptr}/{word}")
        return self._compile_flat(flat, base, ptr)

    def _renamed(self, compile_: Callable[[], Piece], ptr: str, where: str) -> Piece:
        """``compile_()``, with a refusal inside the anyOf made up at ``ptr`` named by ``where`` (the keyword it
        was made from: the made-up pointer names nothing in the schema)."""
        try:
            return compile_()
        except SchemaError as exc:
            if exc.pointer != f"{ptr}/anyOf" and not exc.pointer.startswith(f"{ptr}/anyOf/"):
                raise
            raise type(exc)(str(exc).rsplit(" (at ", 1)[0], pointer=where) from None

    def _flat(self, schema: Any, base: str, ptr: str, depth: int) -> dict:
        """``schema`` with its top-level ``$ref``/``allOf`` merged away (False: an impossible schema)."""
        if schema is True:
            return {}
        if schema is False:
            raise Unsatisfiable
        if not isinstance(schema, dict):
            raise SchemaError("a schema must be an object or a boolean", pointer=ptr)
        if depth > MAX_MERGE_DEPTH:
            raise UnsupportedSchemaFeature("allOf/$ref merging nests too deep", pointer=ptr)
        out = {k: v for k, v in known_only(schema).items() if k not in ("$ref", "allOf")}
        if "$ref" in schema:
            target = self.resolver.resolve(schema["$ref"], base, pointer=f"{ptr}/$ref")
            out = merge(out, self._flat(target.schema, target.base, target.pointer, depth + 1), pointer=ptr)
        subs = schema.get("allOf", [])
        if not isinstance(subs, list) or not subs and "allOf" in schema:
            raise SchemaError("allOf must be a non-empty array", pointer=f"{ptr}/allOf")
        for i, sub in enumerate(subs):
            out = merge(out, self._flat(sub, base, f"{ptr}/allOf/{i}", depth + 1), pointer=ptr)
        return absorb_unevaluated(out)

    def _compile_flat(self, schema: dict, base: str, ptr: str) -> Piece:
        if "enum" in schema or "const" in schema:
            return self._compile_enum(schema, ptr)
        # anyOf/oneOf/not/if that only ask which keys are present: conditions inside the object's rules
        absorbed = absorb(self, schema, base)
        if absorbed is not schema:
            try:
                return self._compile_applied(absorbed, base, ptr)
            except UnsupportedSchemaFeature as refused:
                # a value condition the object walk cannot split: the union path may still be exact; if it is
                # not either, the object walk's refusal names the more precise pointer
                try:
                    return self._compile_applied(schema, base, ptr)
                except UnsupportedSchemaFeature:
                    raise refused from None
        return self._compile_applied(schema, base, ptr)

    def _compile_applied(self, schema: dict, base: str, ptr: str) -> Piece:
        if "not" in schema:  # folded into positive keywords, which may bring an enum or another not: again
            schema = self._apply_not(schema, base, ptr)
            return NOTHING if schema is None else self._compile_flat(schema, base, ptr)
        if schema.get("dependentSchemas"):
            try:  # presence-only entries in the object rules first, as absorb's conditions above
                return self._compile_conditional(schema, base, ptr, presence=True)
            except UnsupportedSchemaFeature as refused:
                try:
                    return self._compile_conditional(schema, base, ptr, presence=False)
                except UnsupportedSchemaFeature:
                    raise refused from None
        return self._compile_conditional(schema, base, ptr, presence=True)

    def _compile_conditional(self, schema: dict, base: str, ptr: str, *, presence: bool) -> Piece:
        unioned = self._conditionals(schema, base, ptr, presence=presence)
        if unioned is not None:
            schema, where = unioned
            return self._renamed(lambda: self._compile_branches(schema, "anyOf", base, ptr, label=where[len(ptr) + 1:]),
                                 ptr, where)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self._compile_branches(schema, key, base, ptr)
        return self._compile_types(schema, base, ptr)

    def _flattener(self, base: str):
        return lambda schema, ptr: self._flat(schema, base, ptr, 0)

    def _apply_not(self, schema: dict, base: str, ptr: str) -> dict | None:
        """``schema`` with its ``not`` replaced by the complement's positive pieces (negation.py); None: nothing."""
        rest = {k: v for k, v in schema.items() if k != "not"}
        negator = Negator(self._flattener(base), assert_formats=self.builder.assert_formats)
        pieces = negator.negate(schema["not"], f"{ptr}/not", within=rest)
        if not pieces:
            return None
        single = len(pieces) == 1 and not {"allOf", "$ref"} & set(pieces[0])  # merge takes flat schemas only
        return merge(rest, pieces[0] if single else {"anyOf": pieces}, pointer=f"{ptr}/not")

    def _conditionals(self, schema: dict, base: str, ptr: str, *, presence: bool) -> tuple[dict, str] | None:
        def presence_only(key: str, sub: Any) -> bool:
            if not presence:
                return False
            try:
                presence_of(self, sub, base, f"{ptr}/dependentSchemas/{escape_token(key)}")
                return True
            except NotPresence:
                return False
        return conditions_as_any_of(schema, ptr, presence_only=presence_only)

    def _compile_enum(self, schema: dict, ptr: str) -> Piece:
        if "enum" in schema and not isinstance(schema["enum"], list):
            raise SchemaError("enum must be an array", pointer=f"{ptr}/enum")
        values = list(schema.get("enum", [])) + ([schema["const"]] if "const" in schema else [])
        # Each value is checked against the node without its enum/const (every listed value is in its own
        # enum), then against the other of the two: validating against the whole node scanned the enum
        # for every value, quadratic (a 5,000-value enum took 20 s in jsonschema's equality).
        validator = self._node_validator({k: v for k, v in schema.items() if k not in ("enum", "const")}, ptr)
        in_enum = self._node_validator({"enum": schema["enum"]}, ptr) if "enum" in schema else None
        is_const = self._node_validator({"const": schema["const"]}, ptr) if "const" in schema else None
        n_enum = len(schema.get("enum", []))
        pieces, seen = [], set()
        for i, value in enumerate(values):
            text = json.dumps(value, sort_keys=False, ensure_ascii=False)
            if text in seen or not _admits(validator, value, ptr):
                continue
            if (is_const is not None and i < n_enum and not is_const.is_valid(value)) or (
                    in_enum is not None and i >= n_enum and not in_enum.is_valid(value)):
                continue
            seen.add(text)
            pieces.append(const_piece(self, value))
        return self.builder.union(pieces, "enum")

    def _node_validator(self, schema: dict, ptr: str) -> jsonschema.protocols.Validator:
        if self._validator is None:
            cls = jsonschema.Draft202012Validator
            checker = cls.FORMAT_CHECKER if self.builder.assert_formats else None
            self._validator = cls(self.root, format_checker=checker, registry=preloaded_registry(self.documents))
        try:
            validator = self._validator.evolve(schema=as_jsonschema(schema))
            validator.is_valid(None)
        except jsonschema.exceptions.SchemaError as exc:
            raise SchemaError(f"invalid schema: {exc.message}", pointer=ptr) from exc
        except Exception as exc:  # a $ref jsonschema cannot follow, a bad regex: our compile must not crash
            raise UnsupportedSchemaFeature(f"enum/const next to a keyword that cannot be checked: {exc}",
                                           pointer=ptr) from exc
        return validator

    def scalar_const(self, value: Any) -> Piece:
        return scalars.const_scalar(self.builder, value)

    def _compile_branches(self, schema: dict, key: str, base: str, ptr: str, *, label: str | None = None) -> Piece:
        branches = schema[key]
        if not isinstance(branches, list) or not branches:
            raise SchemaError(f"{key} must be a non-empty array", pointer=f"{ptr}/{key}")
        rest = {k: v for k, v in schema.items() if k != key and k not in ANNOTATIONS}
        for word in ("unevaluatedProperties", "unevaluatedItems"):
            if rest.get(word, True) not in (True, {}):  # what counts as evaluated depends on the branches
                raise UnsupportedSchemaFeature(f"{word} next to {key}", pointer=f"{ptr}/{word}")
        pieces = self._branch_pieces(branches, rest, key, base, ptr, union_mode=False)
        if sum(1 for p in pieces if "object" in p.kinds) > 1:
            # Object branches would meet in one parser state with overlapping additional-key terminals: each
            # starts with its first required property instead (a discriminator, typically), a sound restriction.
            pieces = self._branch_pieces(branches, rest, key, base, ptr, union_mode=True)
        if key == "anyOf" and label is None and self.disjoint_any_of and sum(p.sym is not None for p in pieces) > 1:
            try:
                disjoint = first_match_branches(branches, rest, self._flattener(base),
                                                assert_formats=self.builder.assert_formats, ptr=f"{ptr}/anyOf")
                return self._compile_branches({**rest, "anyOf": disjoint}, "anyOf", base, ptr, label="anyOf")
            except UnsupportedSchemaFeature:
                pass  # no exact disjoint form here: the plain union (the check decides)
        if key == "oneOf":
            try:
                check_disjoint(pieces, pointer=f"{ptr}/oneOf")
            except UnsupportedSchemaFeature:  # overlapping branches: exactly one, as disjoint pieces
                exclusive = exclusive_branches(branches, rest, self._flattener(base),
                                               assert_formats=self.builder.assert_formats, ptr=f"{ptr}/oneOf")
                return self._compile_branches({**rest, "anyOf": exclusive}, "anyOf", base, ptr, label="oneOf")
        if sum(1 for p in pieces if p.regex is None and p.sym is not None) > 1:
            self.union_pointers.append(f"{ptr}/{label or key}")
        return self.builder.union(pieces)

    def _branch_pieces(self, branches: list, rest: dict, key: str, base: str, ptr: str, *,
                       union_mode: bool) -> list[Piece]:
        pieces = []
        for i, sub in enumerate(branches):
            sub_ptr = f"{ptr}/{key}/{i}"
            if rest and sub is not False:
                sub = rest if sub is True else {"allOf": [rest, sub]}
            self._union_mode = union_mode and sub is not True
            pieces.append(self.compile(sub, base, sub_ptr))
        self._union_mode = False
        return pieces

    def _compile_types(self, schema: dict, base: str, ptr: str) -> Piece:
        types = schema.get("type", list(JSON_TYPES))
        types = [types] if isinstance(types, str) else types
        if not isinstance(types, list) or not types or any(t not in JSON_TYPES for t in types):
            raise SchemaError(f"type must be one of {JSON_TYPES} or a non-empty array of them",
                              pointer=f"{ptr}/type")
        if schema.get("nullable") is True and "null" not in types:
            types = [*types, "null"]
        pieces = []
        for t in dict.fromkeys(types):
            if t == "integer" and "number" in types:
                continue
            if t == "object":
                pieces.append(compile_object(self, schema, base, ptr))
            elif t == "array":
                pieces.append(compile_array(self, schema, base, ptr))
            else:
                pieces.append(scalars.compile_scalar(self.builder, schema, t, ptr))
        return self.builder.union(pieces, "types")


def _admits(validator: jsonschema.protocols.Validator, value: Any, ptr: str) -> bool:
    """``validator.is_valid(value)``, with what jsonschema cannot evaluate (a ``$ref`` to nowhere, a ``$ref``
    cycle it recurses into without end) refused by pointer rather than raised untyped."""
    try:
        return validator.is_valid(value)
    except RecursionError:
        raise UnsupportedSchemaFeature("enum/const next to a recursive $ref that cannot be checked",
                                       pointer=ptr) from None
    except Exception as exc:  # noqa: BLE001 -- referencing's errors have no common public base
        raise UnsupportedSchemaFeature(f"enum/const next to a keyword that cannot be checked: {exc}"[:300],
                                       pointer=ptr) from None
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException:  # noqa: BLE001 -- rpds (Rust) turns a RecursionError inside it into pyo3's
        # PanicException, a BaseException no module exports: every BaseException but the interpreter's stops
        raise UnsupportedSchemaFeature("enum/const next to a recursive $ref that cannot be checked",
                                       pointer=ptr) from None

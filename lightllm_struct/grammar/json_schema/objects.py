"""Objects as LALR(1)-friendly rules.

Known properties appear in schema order, each optional one may be skipped, additional keys (when allowed) may
appear anywhere between them. The rules form a chain indexed by "next known property", so the grammar is
linear in the number of properties (no 2^n subsets) and commas are right in every combination: the first
member has no comma, every later one starts with one. The additional-key terminal excludes every known key,
so in any parser state the key terminals are disjoint.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from lightllm_struct.grammar.errors import SchemaError, UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema.builder import NOTHING, Piece
from lightllm_struct.grammar.json_schema.key_classes import declared_value, extra_keys, matches, patterns_of
from lightllm_struct.grammar.json_schema.key_names import names_fsm
from lightllm_struct.grammar.json_schema.refs import escape_token
from lightllm_struct.grammar.json_schema.values import nonneg_int

if TYPE_CHECKING:
    from lightllm_struct.grammar.json_schema.converter import Converter


def compile_object(conv: Converter, schema: dict, base: str, ptr: str) -> Piece:
    props = schema.get("properties", {})
    required = schema.get("required", [])
    if not isinstance(props, dict):
        raise SchemaError("properties must be an object", pointer=f"{ptr}/properties")
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise SchemaError("required must be an array of strings", pointer=f"{ptr}/required")
    _check_object_keywords(schema, ptr)
    pats = patterns_of(schema, ptr)
    names = names_fsm(conv, schema, base, ptr)
    addl_schema = schema.get("additionalProperties", True)
    members: list[tuple[str, Piece, bool]] = []
    for key, sub in props.items():
        allowed = names is None or names.accepts(key)
        piece = conv.compile(declared_value(key, sub, pats), base, f"{ptr}/properties/{escape_token(key)}") \
            if allowed else NOTHING
        members.append((key, piece, key in required))
    for key in required:
        if key not in props:  # a required key the schema does not describe: an additional or pattern property
            own = addl_schema if not any(matches(p, key) for p in pats) else True
            allowed = names is None or names.accepts(key)
            members.append((key, conv.compile(declared_value(key, own, pats), base, ptr) if allowed else NOTHING,
                            True))
    if any(req and piece.sym is None for _k, piece, req in members):
        return NOTHING
    lead = conv.lead_required[-1] and any(req for _k, _p, req in members)
    excluded = [k for k, _p, _r in members]
    if lead:  # a union branch: written from its first required property on, extras only after it
        members = members[next(i for i, (_k, _p, req) in enumerate(members) if req):]
    extras = extra_keys(conv, schema, base, ptr, excluded, names)
    n_required = sum(1 for _k, _p, r in members if r)
    nonempty = _check_property_counts(schema, ptr, n_required, None if extras else len(members))
    live = [(k, p, r) for k, p, r in members if p.sym is not None]
    if nonempty and not live and not extras:
        return NOTHING
    tags = tuple((k, p.regex) for k, p, r in live if r and p.regex is not None)
    return Piece(_object_rules(conv, live, extras, lead_required=lead, nonempty=nonempty), None,
                 frozenset({"object"}), tags)


def _check_object_keywords(schema: dict, ptr: str) -> None:
    for key in ("dependentRequired", "dependentSchemas"):
        if schema.get(key):
            raise UnsupportedSchemaFeature(f"{key} is not supported", pointer=f"{ptr}/{key}")
    for key in ("unevaluatedProperties",):
        if key in schema and schema[key] not in (True, {}):
            raise UnsupportedSchemaFeature(f"{key} is not supported", pointer=f"{ptr}/{key}")


def _check_property_counts(schema: dict, ptr: str, n_required: int, n_max: int | None) -> bool:
    """Whether the object must be non-empty (``minProperties: 1``, which the rule chain enforces); other
    min/maxProperties are supported where the rest of the schema already implies them."""
    lo = nonneg_int(schema, "minProperties", ptr, 0) or 0
    hi = nonneg_int(schema, "maxProperties", ptr)
    if lo > max(n_required, 1):
        raise UnsupportedSchemaFeature("minProperties above the number of required properties",
                                       pointer=f"{ptr}/minProperties")
    if hi is not None and (n_max is None or hi < n_max):
        raise UnsupportedSchemaFeature("maxProperties below the number of possible properties",
                                       pointer=f"{ptr}/maxProperties")
    return lo > n_required


def _object_rules(conv: Converter, members: list[tuple[str, Piece, bool]], extras: list[tuple[str, str]], *,
                  lead_required: bool = False, nonempty: bool = False) -> str:
    b = conv.builder
    n = len(members)
    prefix = b.new_rule("obj")
    names = {(lead, kind, i): f"{prefix}_{kind}{'r' if lead else 'f'}{i}"
             for lead in (False, True) for kind in "xy" for i in range(n + 1)}
    for lead in (False, True):
        comma = f"{b.comma} " if lead else ""
        for i in range(n + 1):
            rest_i, rest_next = names[(True, "x", i)], names[(True, "x", min(i + 1, n))]
            x_alts = [f"{comma}{extra_t} {b.colon} {value} {rest_i}" for extra_t, value in extras] \
                if lead or not lead_required else []
            # non-empty: the end of the nothing-written-yet chain (the empty object) does not exist
            closed = nonempty and not lead and i == n
            if lead or i == 0:  # a first member only ever starts the object
                b.set_rule(names[(lead, "x", i)], x_alts + ([] if closed else [names[(lead, "y", i)]]))
            if i == n:
                if not closed:
                    b.set_rule(names[(lead, "y", i)], [""])
                continue
            key, piece, req = members[i]
            key_t = b.terminal(b.literal(key))
            y_alts = [f"{comma}{key_t} {b.colon} {piece.sym} {rest_next}"]
            if not req and not (nonempty and not lead and i + 1 == n):
                y_alts.append(names[(lead, "y", i + 1)])
            b.set_rule(names[(lead, "y", i)], y_alts)
    return b.rule("object", [f"{b.lbrace} {names[(False, 'x', 0)]} {b.rbrace}"])

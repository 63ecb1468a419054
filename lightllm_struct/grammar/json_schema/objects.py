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
from lightllm_struct.grammar.json_schema.object_states import Counts, Member, object_rules
from lightllm_struct.grammar.json_schema.presence import keys_of, object_conditions, value_sets
from lightllm_struct.grammar.json_schema.refs import escape_token
from lightllm_struct.grammar.json_schema.value_classes import member_classes
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
    for key in ("unevaluatedProperties",):
        if key in schema and schema[key] not in (True, {}):
            raise UnsupportedSchemaFeature(f"{key} is not supported", pointer=f"{ptr}/{key}")
    conditions = object_conditions(conv, schema, base, ptr)
    pats = patterns_of(schema, ptr)
    names = names_fsm(conv, schema, base, ptr)
    addl_schema = schema.get("additionalProperties", True)
    named = [k for f in conditions for k in keys_of(f)]
    members: list[Member] = []
    # declared keys in schema order, then required and condition keys the schema does not describe (additional
    # or pattern properties, now at a fixed place so that their presence is known)
    for key in dict.fromkeys([*props, *required, *named]):
        allowed = names is None or names.accepts(key)
        if key in props:
            sub, sub_ptr = props[key], f"{ptr}/properties/{escape_token(key)}"
        else:
            sub, sub_ptr = (addl_schema if not any(matches(p, key) for p in pats) else True), ptr
        own = declared_value(key, sub, pats)
        piece = conv.compile(own, base, sub_ptr) if allowed else NOTHING
        sets = value_sets(conditions, key)
        classes = tuple(member_classes(conv, own, piece, sets, base, sub_ptr)) if sets and piece.sym else None
        members.append(Member(key, piece, key in required, classes))
    if any(m.required and m.piece.sym is None for m in members):
        return NOTHING
    lead = conv.lead_required[-1] and any(m.required for m in members)
    excluded = [m.key for m in members]
    if lead:  # a union branch: its first required property written first (the branches' discriminator), the
        # properties declared before it after it, extras only after it
        first = next(i for i, m in enumerate(members) if m.required)
        members = [members[first], *members[:first], *members[first + 1:]]
    wanted = set(named)
    members = [m for m in members if m.piece.sym is not None or m.key in wanted]
    extras = extra_keys(conv, schema, base, ptr, excluded, names)
    rule = object_rules(conv, members, extras, conditions=conditions, counts=_counts(schema, ptr, members, extras),
                        lead_required=lead, pointer=ptr)
    if rule is None:
        return NOTHING
    tags = tuple((m.key, m.piece.regex) for m in members if m.required and m.piece.regex is not None)
    return Piece(rule, None, frozenset({"object"}), tags)


def _counts(schema: dict, ptr: str, members: list[Member], extras: list) -> Counts:
    """min/maxProperties, or 0/None where the members already imply them (no count in the states then)."""
    lo = nonneg_int(schema, "minProperties", ptr, 0) or 0
    hi = nonneg_int(schema, "maxProperties", ptr)
    if lo <= sum(1 for m in members if m.required):
        lo = 0
    if hi is not None and not extras and hi >= sum(1 for m in members if m.piece.sym is not None):
        hi = None
    return Counts(lo, hi)

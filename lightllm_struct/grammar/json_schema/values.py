"""Helpers shared by the object and array compilers: non-negative integer keywords, ``const`` values."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lightllm_struct.grammar.errors import SchemaError
from lightllm_struct.grammar.json_schema.builder import Piece

if TYPE_CHECKING:
    from lightllm_struct.grammar.json_schema.converter import Converter


def nonneg_int(schema: dict, key: str, pointer: str, default: int | None = None) -> int | None:
    """A keyword that must be a non-negative integer (1.0 counts, as JSON Schema says)."""
    if key not in schema:
        return default
    value = schema[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != int(value):
        raise SchemaError(f"{key} must be a non-negative integer", pointer=f"{pointer}/{key}")
    return int(value)


def const_piece(conv: Converter, value: Any) -> Piece:
    """Exactly one JSON value (objects keep the key order given)."""
    b = conv.builder
    if isinstance(value, dict):
        parts = [f"{b.terminal(b.literal(k))} {b.colon} "
                 f"{const_piece(conv, v).sym}" for k, v in value.items()]
        body = f" {b.comma} ".join(parts)
        return Piece(b.rule("const_obj", [f"{b.lbrace} {body} {b.rbrace}"]), None, frozenset({"object"}))
    if isinstance(value, list):
        body = f" {b.comma} ".join(str(const_piece(conv, v).sym) for v in value)
        return Piece(b.rule("const_arr", [f"{b.lbrack} {body} {b.rbrack}"]), None, frozenset({"array"}))
    return conv.scalar_const(value)

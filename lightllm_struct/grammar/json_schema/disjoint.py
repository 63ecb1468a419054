"""Proving ``oneOf`` branches disjoint, so that "exactly one" may be compiled as "any one"."""
from __future__ import annotations

import functools
from collections.abc import Sequence

import interegular

from lightllm_struct.grammar.errors import UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema.builder import Piece


@functools.lru_cache(maxsize=256)
def _fsm(regex: str):
    return interegular.parse_pattern(regex).to_fsm()


def regexes_disjoint(a: str, b: str) -> bool:
    """Whether no string matches both regexes."""
    fa, fb = _fsm(a), _fsm(b)
    return (fa & fb).empty()


def check_disjoint(pieces: Sequence[Piece], *, pointer: str) -> None:
    """Raise unless no JSON value belongs to two of the pieces.

    Branches are disjoint when they produce different JSON types, when both are single terminals whose
    regexes share no string, or when both are objects requiring one key whose value terminals share no string
    (a discriminator such as ``"kind": {"const": "circle"}``). Anything else (two object branches, say) is not proved and is refused.

    Raises
    ------
    UnsupportedSchemaFeature : two branches that may overlap.
    """
    live = [(i, p) for i, p in enumerate(pieces) if p.sym is not None]
    for n, (i, a) in enumerate(live):
        for j, b in live[n + 1:]:
            if not a.kinds & b.kinds:
                continue
            if a.regex is not None and b.regex is not None and regexes_disjoint(a.regex, b.regex):
                continue
            if a.kinds == b.kinds == {"object"} and _discriminated(a, b):
                continue
            raise UnsupportedSchemaFeature(
                f"oneOf branches {i} and {j} may both match one value (only provably disjoint oneOf is supported)",
                pointer=pointer)


def _discriminated(a: Piece, b: Piece) -> bool:
    tags_b = dict(b.tags)
    return any(key in tags_b and regexes_disjoint(regex, tags_b[key]) for key, regex in a.tags)

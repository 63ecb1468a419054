"""Proving ``oneOf`` branches disjoint, so that "exactly one" may be compiled as "any one"."""
from __future__ import annotations

from collections.abc import Sequence

from lightllm_struct.grammar.deadline import current_deadline
from lightllm_struct.grammar.errors import CompileTimeout, GrammarError, UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema.builder import Piece
from lightllm_struct.grammar.json_schema.lalr_check import MAX_DFA_STATES
from lightllm_struct.grammar.lexing.dfa_cache import dfas_intersect, terminal_dfa
from lightllm_struct.grammar.parsing.cfg import lark_regex


def regexes_disjoint(a: str, b: str) -> bool:
    """Whether no string matches both terminal regexes (False also where that is not proved).

    Decided on the terminals' byte DFAs, under the compile deadline and state bounds, into the cache the
    compiler takes them from next. interegular's construction checks nothing: one dev-corpus oneOf
    (Github_ultra---o62899) ran 17 minutes past a 10 s deadline in it. Lazily built DFAs are explored as far
    as the product reaches; a DFA or product past its bound is not proved disjoint: the oneOf then takes the
    exact exclusive path or is refused.
    """
    deadline = current_deadline()
    pa, pb = lark_regex(a), lark_regex(b)
    if pa is None or pb is None:
        return False
    try:
        da, db = (terminal_dfa(p, None, max_states=MAX_DFA_STATES, deadline=deadline) for p in (pa, pb))
        return not dfas_intersect(da, db, deadline=deadline)
    except CompileTimeout:
        raise
    except GrammarError:  # a DFA or the product past its bound (RegexError, GrammarTooComplex)
        return False


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

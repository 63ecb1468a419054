"""Test-side acceptance of text by a generated grammar, with the core engine's lexing rules.

The core (G1) lexes byte-level, contextually (only terminals the LR state can shift) and by longest match
without backtracking. Lark's own lexer takes the first regex alternative that matches instead, so it is not a
faithful stand-in; this drives lark's LALR parser with the core's lexing rule instead.
"""
from __future__ import annotations

import functools
import re

import lark
import lark.lexer
from lark.lexer import Token


@functools.lru_cache(maxsize=512)
def lalr_parser(text: str) -> lark.Lark:
    """Lark's LALR parser for grammar text (lark's pairwise regex collision report is skipped: slow, unused)."""
    saved = lark.lexer.has_interegular
    lark.lexer.has_interegular = False
    try:
        return lark.Lark(text, parser="lalr")
    finally:
        lark.lexer.has_interegular = saved


def accepts(parser: lark.Lark, text: str) -> bool:
    """Whether ``text`` is accepted with contextual longest-match lexing."""
    patterns = {t.name: re.compile(t.pattern.to_regexp(), re.DOTALL) for t in parser.terminals}
    state = parser.parse_interactive("")
    pos = 0
    while pos < len(text):
        best: tuple[str, int] | None = None
        for name in state.accepts():
            if name == "$END":
                continue
            end = _longest(patterns[name], text, pos)
            if end is not None and (best is None or end > best[1]):
                best = (name, end)
        if best is None:
            return False
        state.feed_token(Token(best[0], text[pos:best[1]]))
        pos = best[1]
    return "$END" in state.accepts()


def _longest(rx: re.Pattern, text: str, pos: int) -> int | None:
    for end in range(len(text), pos, -1):
        if rx.fullmatch(text, pos, end):
            return end
    return None

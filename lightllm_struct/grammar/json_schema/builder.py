"""Accumulates the rules and terminals of one generated Lark grammar.

A compiled subschema is a :class:`Piece`: a grammar symbol plus what we know about its language. Pieces that
are a single terminal keep their regex, so unions of scalars (``anyOf`` of strings and numbers, enums) become one
terminal: two overlapping terminals acceptable in the same parser state would make the longest-match lexer
guess, and a wrong guess loses valid continuations.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from lightllm_struct.grammar.errors import UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema.numbers import ANY_NUMBER
from lightllm_struct.grammar.json_schema.regex_util import alt
from lightllm_struct.grammar.json_schema.strings import ANY_STRING, literal_spellings, literal_string
from lightllm_struct.grammar.lexing.byte_dfa import ByteDFA
from lightllm_struct.grammar.lexing.dfa_cache import provide
from lightllm_struct.grammar.lexing.finite_dfa import finite_dfa
from lightllm_struct.grammar.parsing.cfg import lark_regex

KINDS = frozenset({"null", "boolean", "number", "string", "object", "array"})
# Flexible whitespace: at most two spaces, then optionally one newline and an indent. Bounded, so a model can
# never run away in whitespace; enough for pretty-printed JSON up to 20 levels of 2-space indent.
FLEX_WS = r"[ \t]{0,2}(?:\r?\n[ \t]{0,40})?"
WHITESPACE_MODES = ("compact", "flexible")
# How a literal string (declared key, const, enum) may be spelled: its json.dumps spellings, or any JSON escape.
LITERAL_ESCAPES = ("canonical", "any")
# Unions of literals up to this many bytes get their DFA built from the strings (finite_dfa); bigger enums keep
# the regex path, whose work and memory the frontend's size limits already bound.
_FINITE_MAX_BYTES = 1 << 16


@dataclass(frozen=True)
class Piece:
    """A compiled subschema: ``sym`` (None: no instance at all), its terminal regex if it is one terminal."""

    sym: str | None
    regex: str | None
    kinds: frozenset[str]
    # Object pieces: (key, value regex) of required properties whose value is one terminal. Two object
    # branches with a common such key whose regexes are disjoint are disjoint (a discriminator).
    tags: tuple[tuple[str, str], ...] = ()


NOTHING = Piece(None, None, frozenset())


class GrammarBuilder:
    """Rules and deduplicated terminals of one grammar; punctuation terminals carry the whitespace policy."""

    def __init__(self, *, whitespace: str, literal_escapes: str = "canonical", assert_formats: bool = True) -> None:
        if whitespace not in WHITESPACE_MODES:
            raise ValueError(f"whitespace must be one of {WHITESPACE_MODES}, got {whitespace!r}")
        if literal_escapes not in LITERAL_ESCAPES:
            raise ValueError(f"literal_escapes must be one of {LITERAL_ESCAPES}, got {literal_escapes!r}")
        self.whitespace = whitespace
        self.literal_escapes = literal_escapes
        self.assert_formats = assert_formats
        self.rules: dict[str, list[str]] = {}
        self._terminals: dict[str, str] = {}
        # regex -> the byte strings it matches, for regexes known to match a small finite set (see terminal)
        self._finite: dict[str, frozenset[bytes]] = {}
        self._counter = 0
        ws = FLEX_WS if whitespace == "flexible" else ""
        self.lbrace = self.terminal(r"\{" + ws, name="LBRACE")
        self.rbrace = self.terminal(ws + r"\}", name="RBRACE")
        self.lbrack = self.terminal(r"\[" + ws, name="LBRACK")
        self.rbrack = self.terminal(ws + r"\]", name="RBRACK")
        self.comma = self.terminal(ws + "," + ws, name="COMMA")
        self.colon = self.terminal(ws + ":" + ws, name="COLON")
        self._any: Piece | None = None

    def terminal(self, regex: str, *, name: str | None = None, make: Callable[..., ByteDFA] | None = None) -> str:
        """The terminal for ``regex`` (one terminal per distinct regex). ``make(max_states=, deadline=)``, or
        for a finite set of strings (literals and their unions) the set itself, builds its DFA for the
        compiler instead of the regex path (``dfa_cache.provide``): same language, no regex parse."""
        if regex not in self._terminals:
            self._counter += 1
            self._terminals[regex] = name or f"T{self._counter}"
            strings = self._finite.get(regex)
            if make is None and strings is not None:
                make = functools.partial(finite_dfa, strings)
            pattern = lark_regex(regex) if make is not None else None  # what the compiler looks it up by
            if pattern is not None:
                provide(pattern, make)
        return self._terminals[regex]

    def literal(self, text: str) -> str:
        """The regex of the JSON string ``text`` (a declared key, a ``const`` or ``enum`` string)."""
        regex = literal_string(text, any_spelling=self.literal_escapes == "any")
        if self.literal_escapes == "canonical":
            self._finite[regex] = frozenset(sp.encode("utf-8") for sp in literal_spellings(text))
        return regex

    def new_rule(self, hint: str) -> str:
        self._counter += 1
        return f"r{self._counter}_{hint}"

    def set_rule(self, name: str, alternatives: Iterable[str]) -> str:
        self.rules[name] = list(dict.fromkeys(alternatives))
        return name

    def rule(self, hint: str, alternatives: Iterable[str]) -> str:
        return self.set_rule(self.new_rule(hint), alternatives)

    def scalar(self, regex: str | None, kinds: Iterable[str]) -> Piece:
        """A one-terminal piece (NOTHING if ``regex`` is None)."""
        if regex is None:
            return NOTHING
        return Piece(self.terminal(regex), regex, frozenset(kinds))

    def union(self, pieces: Sequence[Piece], hint: str = "any_of") -> Piece:
        """The union of pieces; all single-terminal pieces merge into one terminal."""
        live = [p for p in pieces if p.sym is not None]
        if len(live) <= 1:
            return live[0] if live else NOTHING
        kinds = frozenset().union(*(p.kinds for p in live))
        regexes = [p.regex for p in live if p.regex is not None]
        others = list(dict.fromkeys(p.sym for p in live if p.regex is None))
        merged = alt(regexes)
        finite = [self._finite.get(r) for r in regexes]
        if merged is not None and all(f is not None for f in finite):
            union = frozenset().union(*finite)
            if sum(map(len, union)) <= _FINITE_MAX_BYTES:
                self._finite[merged] = union
        scalar = self.scalar(merged, kinds) if regexes else None
        if not others and scalar is not None:
            return scalar
        syms = others + ([scalar.sym] if scalar is not None else [])
        if len(syms) == 1:
            return Piece(syms[0], None, kinds)
        return Piece(self.rule(hint, syms), None, kinds)

    def any_json(self) -> Piece:
        """Any JSON value (the canonical any-JSON grammar: duplicate keys allowed, like JSON itself)."""
        if self._any is None:
            value, obj, arr = "json_value", "json_object", "json_array"
            string, number = self.terminal(ANY_STRING), self.terminal(ANY_NUMBER)
            lit = self.terminal("true|false|null")
            self.set_rule(value, [obj, arr, string, number, lit])
            member = self.set_rule("json_member", [f"{string} {self.colon} {value}"])
            self.set_rule(obj, [f"{self.lbrace} {self.rbrace}",
                                f"{self.lbrace} {member} ({self.comma} {member})* {self.rbrace}"])
            self.set_rule(arr, [f"{self.lbrack} {self.rbrack}",
                                f"{self.lbrack} {value} ({self.comma} {value})* {self.rbrack}"])
            self._any = Piece(value, None, KINDS)
        return self._any

    def render(self, start: Piece, *, pointer: str = "") -> str:
        """The Lark grammar text with ``start`` as its start rule."""
        if start.sym is None:
            raise UnsupportedSchemaFeature("the schema accepts no instance at all", pointer=pointer)
        lines = [f"start: {start.sym}", ""]
        for name, alts in self.rules.items():
            lines.append(f"{name}: " + "\n    | ".join(alts))
        lines.append("")
        for regex, name in self._terminals.items():
            lines.append(f"{name}: /{regex}/")
        return "\n".join(lines) + "\n"

"""A context-free grammar as plain data, read from the Lark text the JSON-schema frontend writes.

The frontend's text uses a small part of Lark: ``name: a b | c`` rules (continuation lines start with
``|``), empty alternatives, ``(a b)*`` groups, and ``NAME: /regex/`` terminals. Reading that part directly
takes a millisecond where lark's grammar loader takes tens (it parses the text with its own LALR parser and
deep-copies every rule tree). Anything else in the text (strings, flags, ``%`` directives, other EBNF) makes
:func:`read_lark_subset` answer None, and the caller hands the text to lark. What is read is what lark
would compile: the same terminals in the same order, the same rules after its EBNF-to-BNF step and its
removal of unused rules and terminals.
"""
from __future__ import annotations

import functools
import re
from ast import literal_eval
from dataclasses import dataclass

from lightllm_struct.grammar.parsing.lr import Terminal

_RULE = re.compile(r"([a-z_][a-z_0-9]*):(.*)")
_TERMINAL = re.compile(r"([A-Z_][A-Z_0-9]*): /(.*)/")
_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


@dataclass(frozen=True)
class Grammar:
    """Terminals, and rules ``(origin, expansion)`` over rule and terminal names; ``start`` is a rule name."""

    terminals: tuple[Terminal, ...]
    rules: tuple[tuple[str, tuple[str, ...]], ...]
    start: str


def read_lark_subset(text: str) -> Grammar | None:
    """The grammar of ``text`` if it stays inside the subset described above, else None."""
    rule_lines: list[tuple[str, list[str]]] = []
    term_lines: list[tuple[str, str]] = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        if line.startswith("    | "):
            if not rule_lines:
                return None
            rule_lines[-1][1].append(line[6:])
            continue
        m = _TERMINAL.fullmatch(line)
        if m is not None:
            term_lines.append((m.group(1), m.group(2)))
            continue
        m = _RULE.fullmatch(line)
        if m is None:
            return None
        rule_lines.append((m.group(1), [m.group(2)]))
    terminals = _terminals(term_lines)
    rules = _rules(rule_lines)
    if terminals is None or rules is None:
        return None
    return _prune(terminals, rules)


def _terminals(lines: list[tuple[str, str]]) -> list[Terminal] | None:
    out = []
    for order, (name, inner) in enumerate(lines):
        # lark's regex token ends at the first unescaped "/": one inside would mean lark reads it otherwise
        if not inner or "/" in inner.replace("\\\\", "").replace("\\/", ""):
            return None
        pattern = lark_regex(inner)
        if pattern is None:
            return None
        out.append(Terminal(name, pattern, None, 0, order))
    return out


@functools.lru_cache(maxsize=256)
def lark_regex(inner: str) -> str | None:
    """The regex a ``NAME: /inner/`` terminal means (see ``_eval_escaping``), memoised: a frontend that
    supplies a terminal's DFA itself (dfa_cache.provide) computes the key the reader then computes again."""
    return _eval_escaping(inner)


def _eval_escaping(s: str) -> str | None:
    """lark's ``load_grammar.eval_escaping`` (what a ``/regex/`` token means), without its character loop.

    lark appends the text a character at a time to a string (quadratic on the 50 KB key regexes of big
    schemas: 6 ms each); a backslash takes the next character with it either way. None where lark would
    raise (a trailing backslash, or text Python's literal parser refuses): the caller then leaves the text
    to lark.
    """
    if s.endswith("\\") and (len(s) - len(s.rstrip("\\"))) % 2:
        return None

    def one(m: re.Match) -> str:
        c = m.group(1)
        if c == "\\":
            return "\\\\\\\\"
        return ("\\" if c in "Uuxnftr" else "\\\\") + c

    w = _ESCAPE.sub(one, s).replace('\\"', '"').replace("'", "\\'")
    try:
        return literal_eval("u'''%s'''" % w)
    except (SyntaxError, ValueError):
        return None


def _rules(lines: list[tuple[str, list[str]]]) -> list[tuple[str, tuple[str, ...]]] | None:
    """Rules after lark's EBNF-to-BNF step: ``x (a b)* y`` is ``x y | x s y`` with ``s: a b | s a b``."""
    defined = {name for name, _ in lines}
    if len(defined) != len(lines) or "start" not in defined:
        return None
    out: list[tuple[str, tuple[str, ...]]] = []
    stars: dict[tuple[str, ...], str] = {}
    extra: list[tuple[str, tuple[str, ...]]] = []
    counter = 0
    for name, alternatives in lines:
        for alt in alternatives:
            tokens = alt.split()
            parts: list[list[str] | tuple[str, ...]] = [[]]
            i = 0
            while i < len(tokens):
                tok = tokens[i]
                if tok.startswith("("):
                    group = [tok[1:]]
                    while not group[-1].endswith(")*"):
                        i += 1
                        if i >= len(tokens) or "(" in tokens[i]:
                            return None
                        group.append(tokens[i])
                    group[-1] = group[-1][:-2]
                    if not all(_SYMBOL.fullmatch(g) for g in group):
                        return None
                    key = tuple(group)
                    if key not in stars:  # lark names and shares repeated groups the same way
                        stars[key] = f"__{name}_star_{counter}"
                        counter += 1
                        extra.append((stars[key], key))
                        extra.append((stars[key], (stars[key],) + key))
                    parts.append((stars[key],))
                    parts.append([])
                elif _SYMBOL.fullmatch(tok):
                    parts[-1].append(tok)
                else:
                    return None
                i += 1
            for expansion in _expand(parts):
                out.append((name, expansion))
    out += extra
    if len(set(out)) != len(out):
        return None  # duplicate alternatives: lark's own error message is the one to give
    return out


def _expand(parts: list) -> list[tuple[str, ...]]:
    """Every expansion of plain runs (lists) and optional star symbols (tuples), star present first."""
    results: list[tuple[str, ...]] = [()]
    for part in parts:
        if isinstance(part, list):
            results = [r + tuple(part) for r in results]
        else:
            results = [r + part for r in results] + results
    return results


def _prune(terminals: list[Terminal], rules: list[tuple[str, tuple[str, ...]]]) -> Grammar | None:
    """Drop rules no other rule uses and terminals no rule uses, as lark's compile does."""
    names = {t.name for t in terminals}
    origins = {origin for origin, _ in rules}
    for _origin, expansion in rules:
        for sym in expansion:
            if sym not in names and sym not in origins:
                return None  # an undefined symbol: lark reports it
    while True:
        used = {sym for origin, exp in rules for sym in exp if sym != origin and sym in origins} | {"start"}
        kept = [r for r in rules if r[0] in used]
        if len(kept) == len(rules):
            break
        rules = kept
        origins = {origin for origin, _ in rules}
    used_terms = {sym for _origin, exp in rules for sym in exp if sym in names}
    kept_terms = tuple(Terminal(t.name, t.pattern, None, 0, i)
                       for i, t in enumerate(t for t in terminals if t.name in used_terms))
    return Grammar(kept_terms, tuple(rules), "start")

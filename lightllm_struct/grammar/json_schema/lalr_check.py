"""Checks of generated grammar text against what the core engine needs.

1. LALR(1) with no conflict at all (strict: shift/reduce conflicts count too); the tables are built directly
   (``parsing/lalr.py``) for text in the frontend's Lark subset, by lark's analysis otherwise.
2. No two terminals that one LR state can see match a common string. The core lexes by longest match without
   backtracking, so such a pair would make it guess, and a wrong guess loses valid continuations. Unions of
   schemas are where this happens (two object branches that both accept extra keys, say).
"""
from __future__ import annotations

import functools
import itertools
import re

import interegular
import lark
from lark.common import ParserConf
from lark.load_grammar import load_grammar
from lark.parsers.lalr_analysis import LALR_Analyzer

try:
    from re import _constants as sre_c
    from re import _parser as sre_parse
except ImportError:  # pragma: no cover - Python < 3.11
    import sre_constants as sre_c  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]


from lightllm_struct.grammar.deadline import current_deadline
from lightllm_struct.grammar.errors import (CompileTimeout, GrammarConflictError, GrammarError, GrammarTooComplex,
                                            RegexError, UnsupportedSchemaFeature)
from lightllm_struct.grammar.json_schema.strings import literal_spelling
from lightllm_struct.grammar.lexing.dfa_cache import dfas_intersect, first_bytes, terminal_dfa
from lightllm_struct.grammar.lexing.lazy_dfa import LazyDFA
from lightllm_struct.grammar.parsing.lr import LRTables, remember_tables, subset_tables, tables_from_analysis

# The compiler's default, so that it finds these DFAs in the cache.
MAX_DFA_STATES = 20_000
MESSAGE = "the schema's alternatives overlap in a way the deterministic (LALR(1)) parser cannot decide"


def check_grammar(text: str, union_pointers: list[str]) -> None:
    """Raise UnsupportedSchemaFeature (at the first anyOf/oneOf with several structured branches) if not fit."""
    where = union_pointers[0] if union_pointers else ""
    try:
        built = subset_tables(text, strict=True)
    except GrammarConflictError as exc:
        raise UnsupportedSchemaFeature(f"{MESSAGE}: {str(exc).splitlines()[0]}", pointer=where) from exc
    if built is None:  # text outside the subset read directly: lark's own analysis
        built = _lark_tables(text, where)
    tables, n_rules = built
    regex = [t.pattern for t in tables.terminals]
    checked: set[tuple[int, int]] = set()
    for actions in tables.actions:
        ids = sorted(t for t in actions if t < len(regex))
        for a, b in itertools.combinations(ids, 2):
            if (a, b) not in checked:
                checked.add((a, b))
                if overlap(regex[a], regex[b]):
                    raise UnsupportedSchemaFeature(f"{MESSAGE}: terminals {tables.terminals[a].name} and "
                                                   f"{tables.terminals[b].name} can match the same text",
                                                   pointer=where)
    # the compiler analyses this very text next: it takes these tables instead of building them again
    remember_tables(text, tables, n_rules)


def _lark_tables(text: str, where: str) -> tuple[LRTables, int]:
    try:
        grammar, _ = load_grammar(text, "<json-schema>", (), False)
        terminals, rules, ignore = grammar.compile(["start"], set())
        analyzer = LALR_Analyzer(ParserConf(rules, None, ["start"]), strict=True)
        analyzer.compute_lalr()
    except lark.exceptions.GrammarError as exc:
        raise UnsupportedSchemaFeature(f"{MESSAGE}: {str(exc).splitlines()[0]}", pointer=where) from exc
    return tables_from_analysis(terminals, ignore, analyzer.parse_table), len(rules)


def overlap(a: str, b: str) -> bool:
    """Whether some string fully matches both regexes.

    Decided on the terminals' byte DFAs (built into the process-wide cache the compiler takes them from
    next); lazily built DFAs, or regexes the DFA builder refuses, go through Python's ``re`` and interegular.
    """
    deadline = current_deadline()  # the compilation's: the DFAs are its work, done early
    try:
        da, db = (terminal_dfa(r, None, max_states=MAX_DFA_STATES, deadline=deadline) for r in (a, b))
    except CompileTimeout:
        raise
    except GrammarError:
        return _overlap_by_regex(a, b)
    if isinstance(da, LazyDFA) or isinstance(db, LazyDFA):
        try:
            return dfas_intersect(da, db, deadline=deadline)
        except (RegexError, GrammarTooComplex):  # the product, or a lazy DFA, past its bound
            return _overlap_by_regex(a, b)
    if not first_bytes(da) & first_bytes(db) and not (da.accepting[0] and db.accepting[0]):
        return False
    for lit, other in ((literal_spelling(a), db), (literal_spelling(b), da)):
        if lit is not None:  # a literal (a known key, a punctuation mark): one match decides
            return other.fullmatch(lit.encode("utf-8", "surrogatepass"))
    try:
        return dfas_intersect(da, db, deadline=deadline)
    except RegexError:
        return _overlap_by_regex(a, b)


def _overlap_by_regex(a: str, b: str) -> bool:
    first_a, first_b = _first_chars(a), _first_chars(b)
    if first_a is not None and first_b is not None and not first_a & first_b:
        return False
    for lit, other in ((_literal(a) or literal_spelling(a), b), (_literal(b) or literal_spelling(b), a)):
        if lit is not None:  # a literal (a known key, a punctuation mark): one match decides, no automaton
            return re.fullmatch(other, lit) is not None
    return not (_fsm(a) & _fsm(b)).empty()


@functools.lru_cache(maxsize=1024)
def _literal(regex: str) -> str | None:
    """The one string a regex matches, if it is a plain literal."""
    items = list(sre_parse.parse(regex))
    if all(op == sre_c.LITERAL for op, _av in items):
        return "".join(chr(av) for _op, av in items)
    return None


@functools.lru_cache(maxsize=1024)
def _fsm(regex: str):
    return interegular.parse_pattern(regex).to_fsm()


@functools.lru_cache(maxsize=1024)
def _first_chars(regex: str) -> frozenset[int] | None:
    """Code points a match can start with (None: unknown/too many, e.g. a negated class or an empty match)."""
    try:
        out = _first(list(sre_parse.parse(regex)))
    except _Unknown:
        return None
    return None if out is None else frozenset(out)


class _Unknown(Exception):
    pass


def _first(items: list) -> set[int] | None:
    """First characters of a sequence; None if the sequence can match the empty string."""
    out: set[int] = set()
    for op, av in items:
        sub, nullable = _first_item(op, av)
        out |= sub
        if not nullable:
            return out
    return None


def _first_item(op, av) -> tuple[set[int], bool]:
    if op == sre_c.LITERAL:
        return {av}, False
    if op == sre_c.IN:
        chars: set[int] = set()
        for kind, value in av:
            if kind == sre_c.LITERAL:
                chars.add(value)
            elif kind == sre_c.RANGE and value[1] - value[0] < 4096:
                chars.update(range(value[0], value[1] + 1))
            else:
                raise _Unknown
        return chars, False
    if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT):
        lo, _hi, sub = av
        first = _first(list(sub))
        if first is None:
            raise _Unknown
        return first, lo == 0
    if op == sre_c.SUBPATTERN:
        return _alternatives([av[-1]])
    if op == sre_c.BRANCH:
        return _alternatives(av[1])
    raise _Unknown


def _alternatives(branches) -> tuple[set[int], bool]:
    out: set[int] = set()
    for branch in branches:
        first = _first(list(branch))
        if first is None:
            raise _Unknown
        out |= first
    return out, False

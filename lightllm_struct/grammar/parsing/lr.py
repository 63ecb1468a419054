"""LALR(1) tables and terminals of a Lark grammar.

Text inside the Lark subset the JSON-schema frontend writes is read and analysed directly (``cfg.py``,
``lalr.py``); any other text goes through lark's grammar loader and LALR analysis.

Terminals and nonterminals become small integers; ``actions[state]`` maps a terminal id to
``(SHIFT, dest)`` or ``(REDUCE, rule id)``; ``gotos[state]`` maps a nonterminal id to the destination.
The pseudo-terminal ``END`` (lark's ``$END``) is terminal id ``len(terminals)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import lark
from lark.exceptions import GrammarError, LarkError, UnexpectedInput
from lark.lexer import Lexer
from lark.load_grammar import load_grammar
from lark.parsers.lalr_analysis import Shift

from lightllm_struct.grammar.cache import LRU
from lightllm_struct.grammar.errors import GrammarConflictError, GrammarSyntaxError, GrammarTooComplex

SHIFT, REDUCE = 0, 1

# Tables by grammar text. The JSON-schema frontend builds the tables anyway (to check the text); it leaves
# them here, so compiling the text does not analyse it again.
def _tables_nbytes(entry: tuple) -> int:
    """Estimated bytes of cached tables: about 100 bytes a table entry, 600 a state (two dicts)."""
    tables = entry[0]
    return 100 * (sum(map(len, tables.actions)) + sum(map(len, tables.gotos))) + 600 * len(tables.actions)


# Bounded in bytes too: a tool of 250 optional parameters has tables of 15 MB.
_TABLES: LRU = LRU(64, max_bytes=64 << 20, size_of=_tables_nbytes)


@dataclass(frozen=True)
class Terminal:
    """One lexical terminal: ``pattern`` is a Python regex, or a literal when ``literal`` is set."""

    name: str
    pattern: str
    literal: str | None
    priority: int
    order: int


@dataclass(frozen=True, eq=False)
class LRTables:
    terminals: tuple[Terminal, ...]
    ignore: tuple[int, ...]  # terminal ids skipped between tokens
    actions: tuple[dict[int, tuple[int, int]], ...]
    gotos: tuple[dict[int, int], ...]
    rules: tuple[tuple[int, int], ...]  # rule id -> (origin nonterminal id, length of expansion)
    start_state: int
    end_state: int

    @property
    def end(self) -> int:
        return len(self.terminals)


class _NoLexer(Lexer):
    """We lex bytes ourselves; skipping lark's regex lexers saves most of its construction time."""

    def __init__(self, lexer_conf) -> None:
        self.lexer_conf = lexer_conf

    def lex(self, lexer_state, parser_state):  # pragma: no cover - never used
        raise NotImplementedError


def build_lr_tables(text: str, *, max_states: int = 20_000, max_rules: int = 20_000) -> LRTables:
    """Parse Lark grammar text and extract its LALR(1) automaton.

    Raises
    ------
    GrammarSyntaxError
        The text is not a valid Lark grammar (message with line and column when lark gives them).
    GrammarConflictError
        The grammar is not LALR(1) (a reduce/reduce collision; shift/reduce resolves as shift).
    GrammarTooComplex
        More rules or LR states than the limits.
    """
    known = _TABLES.get(text)
    if known is not None:
        tables, n_rules = known
        _check_limits(n_rules, len(tables.actions), max_rules, max_states)
        return tables
    direct = subset_tables(text, strict=False, max_states=max_states, max_rules=max_rules)
    if direct is not None:
        return direct[0]
    try:
        # The rule count is checked before lark's LALR analysis, the expensive part (issue 11: limits were
        # checked only after it): load and expand the grammar (a tenth of the time), then analyse that object.
        grammar, _ = load_grammar(text, "<constraint>", (), False)
        _check_limits(len(grammar.compile(["start"], set())[1]), 0, max_rules, max_states)
        parser = lark.Lark(grammar, parser="lalr", lexer=_NoLexer, start="start")
    except UnexpectedInput as exc:
        raise GrammarSyntaxError(f"grammar syntax error at line {exc.line}, column {exc.column}: {exc}") from exc
    except GrammarError as exc:
        msg = str(exc)
        if "collision" in msg or "conflict" in msg.lower():
            raise GrammarConflictError(f"grammar is not LALR(1): {msg}") from exc
        raise GrammarSyntaxError(f"invalid grammar: {msg}") from exc
    except LarkError as exc:
        raise GrammarSyntaxError(f"invalid grammar: {exc}") from exc
    except (KeyError, ValueError, TypeError, RecursionError) as exc:  # lark leaks these on some inputs
        raise GrammarSyntaxError(f"invalid grammar: {type(exc).__name__}: {exc}") from exc
    table = parser.parser.parser.parser.parse_table
    _check_limits(len(parser.rules), len(table.states), max_rules, max_states)
    return tables_from_analysis(parser.terminals, parser.ignore_tokens, table)


def subset_tables(text: str, *, strict: bool, max_states: int = 20_000,
                  max_rules: int = 20_000) -> tuple[LRTables, int] | None:
    """(tables, rule count) built without lark when ``text`` stays inside ``cfg.read_lark_subset``'s part
    of Lark; None otherwise.

    Raises
    ------
    GrammarConflictError
        Not LALR(1) (with ``strict``, shift/reduce conflicts count).
    GrammarTooComplex
        More rules or LR states than the limits.
    """
    # imported here: cfg and lalr build on this module's Terminal and LRTables
    from lightllm_struct.grammar.parsing.cfg import read_lark_subset
    from lightllm_struct.grammar.parsing.lalr import build_lalr

    grammar = read_lark_subset(text)
    if grammar is None:
        return None
    _check_limits(len(grammar.rules), 0, max_rules, max_states)
    return build_lalr(grammar, strict=strict, max_states=max_states), len(grammar.rules)


def remember_tables(text: str, tables: LRTables, n_rules: int) -> None:
    """Keep the tables of a grammar text that were already built (see ``build_lr_tables``)."""
    _TABLES.put(text, (tables, n_rules))


def _check_limits(n_rules: int, n_states: int, max_rules: int, max_states: int) -> None:
    if n_rules > max_rules:
        raise GrammarTooComplex(f"grammar has {n_rules} rules (limit {max_rules})")
    if n_states > max_states:
        raise GrammarTooComplex(f"grammar has {n_states} LR states (limit {max_states})")


def tables_from_analysis(lark_terminals, ignore_names, table) -> LRTables:
    """LRTables from lark's terminal definitions and integer LALR parse table."""
    terminals = tuple(
        Terminal(t.name, t.pattern.to_regexp(), _literal_of(t.pattern), t.priority, i)
        for i, t in enumerate(lark_terminals)
    )
    term_id = {t.name: i for i, t in enumerate(terminals)}
    term_id["$END"] = len(terminals)
    nonterm_id: dict[str, int] = {}
    rule_id: dict[object, int] = {}
    rules: list[tuple[int, int]] = []
    n_states = max(table.states) + 1
    actions: list[dict[int, tuple[int, int]]] = [{} for _ in range(n_states)]
    gotos: list[dict[int, int]] = [{} for _ in range(n_states)]
    for state, row in table.states.items():
        for sym, (action, arg) in row.items():
            if sym in term_id:
                if action is Shift:
                    actions[state][term_id[sym]] = (SHIFT, arg)
                else:
                    if arg not in rule_id:
                        origin = nonterm_id.setdefault(arg.origin.name, len(nonterm_id))
                        rule_id[arg] = len(rules)
                        rules.append((origin, len(arg.expansion)))
                    actions[state][term_id[sym]] = (REDUCE, rule_id[arg])
            else:
                gotos[state][nonterm_id.setdefault(sym, len(nonterm_id))] = arg
    ignore = tuple(term_id[name] for name in ignore_names)
    return LRTables(terminals, ignore, tuple(actions), tuple(gotos), tuple(rules),
                    table.start_states["start"], table.end_states["start"])


def _literal_of(pattern) -> str | None:
    """The literal text of a case-sensitive string terminal; None for regexes."""
    if pattern.type == "str" and not pattern.flags:
        return pattern.value
    return None

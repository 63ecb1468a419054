"""An estimate of the bytes a compiled grammar holds, for caches bounded in bytes (``grammar/cache.py``).

Measuring exactly (a walk of every object) would cost seconds for a large grammar, and caches re-measure
their entries as masks fill them; so this counts the arrays exactly and the Python containers by their
entries, at per-entry costs measured with tracemalloc (CPython 3.11, 64-bit): a dict entry of small ints and
a tuple about 100 bytes, a lexer row made as an ``array('i')`` 1.1 KB. Static parts (LR tables, shortest-
finish tables, DFAs) are counted once per grammar; what grows at run time (lexer rows and signatures made,
masks, budget tables, memos, derived parser edges) each time. Tests hold it within a factor of two of
tracemalloc's measure (``tests/grammar/test_footprint.py``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from lightllm_struct.grammar.lexing.lexer import UnionLexer

_ENTRY = 100  # one dict entry with its key and small-tuple value
_STATE = 300  # one per-state dict's own table
_KERNEL = 130  # one kernel item of the shortest-finish tables
_ROW = 1100  # a lexer row made as array('i') of 256, in its dict
_SIGNATURE = 120  # a product state's signature tuple, plus 80 bytes an alive terminal
_MEMO = 150  # one memo entry (a key tuple and a small result)
_MASK = 200  # a cached mask's entry besides its words


def grammar_nbytes(grammar: Any) -> int:
    """The estimated bytes of ``grammar`` (a ``CompiledGrammar``) as it is now, its caches included."""
    static = getattr(grammar, "_static_nbytes", None)
    if static is None:
        static = grammar._static_nbytes = _static(grammar)
    return static + _dynamic(grammar)


def _static(grammar: Any) -> int:
    lr = grammar.lr
    n = _STATE * 2 * len(lr.actions) + _ENTRY * (sum(map(len, lr.actions)) + sum(map(len, lr.gotos)))
    n += len(grammar.source) + sum(_dfa_nbytes(d) for d in grammar.dfas)
    distances = grammar._distances
    stack = getattr(distances, "stack", None)
    if stack is not None:
        n += _STATE * len(stack._step) + _ENTRY * sum(map(len, stack._step))
        n += _KERNEL * sum(map(len, stack._kernels)) + _ENTRY * (len(stack._rest) + len(stack.minlen))
    return n


def _dfa_nbytes(dfa: Any) -> int:
    table = getattr(dfa, "table", None)
    if isinstance(table, np.ndarray):
        return table.nbytes * 6 // 5  # the table plus its accepting flags and class lists
    return _MEMO * len(getattr(dfa, "_sets", ()))  # a lazy DFA: its states made so far


def _dynamic(grammar: Any) -> int:
    n = sum(lexer_nbytes(lexer) for lexer in list(grammar._lexers.values()))
    n += _ENTRY * len(grammar.dpda._edges)
    n += _MEMO * (len(grammar._lexing) + len(grammar._cells) + len(grammar._crossings) + len(grammar._lexer_memo)
                  + len(grammar._completes) + len(grammar._continues))
    masker = grammar.masker
    words = grammar.tokenizer.num_words * 4
    n += len(masker._masks) * (words + _MASK) + _ENTRY * len(masker._bases)
    budget = grammar._budget_masks
    if budget is not None:
        vocab = grammar.tokenizer.vocab_size
        n += budget._scan_bytes + 4 * budget._units + len(budget._full) * 12 * vocab
        n += len(budget._row_cache) * (words + 8 * vocab // 4) + _MEMO * (len(budget._memo) + len(budget._entries))
    return n


def lexer_nbytes(lexer: Any) -> int:
    """The estimated bytes of one product lexer (eager or lazy) as it is now."""
    states = len(lexer.accept_list)
    n = 3 * 8 * states + 8 * states  # accept_list, mask_base, has_out; accept
    table = getattr(lexer, "sink", None)
    eager = isinstance(lexer, UnionLexer)
    if table is None and not eager:
        table = lexer.sink_table  # a lazy lexer's scan table is its only table
    n += 0 if table is None else table.nbytes
    if eager:
        n += lexer.table.nbytes
        rows = lexer.rows
        n += _ROW * (dict.__len__(rows) if isinstance(rows, dict) else len(rows))
        signature = lexer.signature
        owner = getattr(signature, "_owner", None)
        if owner is not None:
            n += owner.comps.nbytes + _made_signatures(signature, lexer.alive_terms)
        else:  # a list (one terminal's lexer, or a pickled one of old)
            n += _SIGNATURE * len(signature)
    else:  # LazyUnionLexer / FoldedLexer: per-state signatures and rows as lists
        n += (_SIGNATURE + 80) * states + _ROW * len(getattr(lexer, "_row_lists", ()))
        n += 40 * sum(len(c) for c in getattr(lexer, "_comps", ()))
    return n


def _made_signatures(signature: dict, alive_terms: dict) -> int:
    made = dict.__len__(signature)
    if not made:
        return 0
    alive = sum(len(alive_terms[q]) for q in list(dict.keys(alive_terms)))
    return _SIGNATURE * made + 80 * alive

"""The budget check's compiled pieces against the numpy walk they replace, and restrict() bit for bit.

``token_ends`` (the compiled trie walks, preorder and breadth-first) must give the same arrays as
``token_ends_numpy`` (the column walk the budget check used before) from every state of random lexers over
random vocabularies (shared prefixes, duplicate tokens, long tokens) and of real grammars' lexers; and
``BudgetMasks.restrict`` must give the same mask words as a reference that runs the old numpy and Python path
(own caches), on random and long-winded walks of JSON Schema, Lark, regex and choice grammars, under budgets
from below the shortest finish upward.
"""
from __future__ import annotations

import random

import numpy as np
import pytest

from lightllm_struct.grammar import GrammarCompiler, TokenizerInfo
from lightllm_struct.grammar.lexing.lexer import UnionLexer
from lightllm_struct.grammar.masks import ends_jit
from lightllm_struct.grammar.masks.budget import BudgetMasks
from lightllm_struct.grammar.masks.rows_jit import row_values_numpy
from lightllm_struct.grammar.masks.token_ends import (TokenEnds, allowed_rows, allowed_rows_numpy, byte_columns,
                                                      token_ends, token_ends_numpy)
from lightllm_struct.grammar.parsing.distance import INF
from tests.grammar.masks.test_budget import CHOICES, LARK, REGEX, SCHEMAS
from tests.grammar.masks.test_scan_jit import random_lexer, random_vocab
from tests.grammar.small_vocab import small_tokenizer
from tests.grammar.vocab_fixtures import compiler as vocab_compiler

LAZY = {"type": "object", "required": ["s", "n"], "properties": {"s": {"type": "string", "maxLength": 3000},
                                                                 "n": {"type": "integer"}}}
pytestmark = pytest.mark.skipif(not ends_jit.AVAILABLE, reason="numba is not installed")


class _Reference(BudgetMasks):
    """The budget check as it ran before: numpy token ends, allowed rows and their values, the Python
    lexeme-ends search, every completion read anew; caches of its own."""

    def _ends(self, lexer, q):
        return token_ends_numpy(byte_columns(self._tok), lexer, q)

    def _rows(self, words):
        return allowed_rows_numpy(byte_columns(self._tok), words, self._tok.vocab_size)

    def _row_values(self, code, rows, inner):
        return row_values_numpy(code, rows, inner)

    def _in_lexeme(self, stack, lexer, q, touch, completions=None):
        """The Python lexeme search, each terminal's completion read anew (no ``completions``)."""
        best = INF
        for length, term in self.dist.lexeme_ends(lexer, q):
            if length >= best:
                break
            after = self.grammar.end_terminal(stack, term, touch)
            if after is not None:
                best = min(best, length + self.dist.stack.of(after))
        return best


def _same_ends(a, b, where) -> None:
    assert a.code.tolist() == b.code.tolist(), where
    for name in ("states", "cross_rows", "cross_cols", "cross_terms"):
        assert getattr(a, name).tolist() == getattr(b, name).tolist(), (where, name)


def _check_ends(cols, lexer, q, where) -> None:
    """Both compiled walks (preorder and breadth-first) and the dispatcher against the numpy walk."""
    want = token_ends_numpy(cols, lexer, q)
    _same_ends(token_ends(cols, lexer, q), want, where)
    if isinstance(lexer, UnionLexer):
        for wide in (False, True):
            got = cols.trie_rows.ends(lexer.sink_table, lexer.accept, lexer.num_states, q, wide=wide)
            _same_ends(TokenEnds(*got), want, (where, wide))


def _union(table: np.ndarray, accept: np.ndarray) -> UnionLexer:
    n = len(table)
    return UnionLexer(uid=0, terminals=frozenset(), table=table, accept=accept, rows=[r.tolist() for r in table],
                      accept_list=accept.tolist(), signature=[()] * n, alive_terms=[()] * n)


@pytest.mark.parametrize("seed", range(6))
def test_trie_walk_equals_the_numpy_walk_on_random_lexers(seed):
    rng = random.Random(seed)
    vocab = [b"</s>"] + random_vocab(rng, 300)
    tok = TokenizerInfo.from_vocab(vocab, eos_token_ids=[0], special_token_ids=[])
    cols = byte_columns(tok)
    assert cols.trie_rows is not None
    for density in (0.2, 0.6, 0.95):
        raw = random_lexer(rng, 7, density)
        lexer = _union(raw.table, raw.accept)
        for q in range(lexer.num_states):
            _check_ends(cols, lexer, q, (density, q))


def _text_ids(tok, words: np.ndarray) -> list[int]:
    bits = np.unpackbits(words.view(np.uint8), bitorder="little")[:tok.vocab_size]
    return [int(t) for t in np.flatnonzero(bits) if tok.vocab[t] and t not in tok.eos_token_ids]


def _walks(grammar, tok, rng: random.Random, *, walks: int, steps: int):
    """Configurations along budget-respecting walks, random or picking the longest token."""
    budget_masks = grammar.budget_masks
    start = int(grammar.distances.start)
    for walk in range(walks):
        config, budget = grammar.initial_config(), start + rng.choice([0, 3, 20, 60])
        for step in range(min(steps, budget)):
            yield config, budget - step
            words = budget_masks.restrict(config, grammar.masker.mask(config), budget - step)
            ids = _text_ids(tok, words)
            if not ids:
                break
            token = max(ids, key=lambda t: len(tok.vocab[t])) if walk % 3 == 2 else rng.choice(ids)
            config = grammar.feed_bytes(config, tok.vocab[token])
            assert config is not None


def _grammars(comp):
    yield from ((name, comp.compile_json_schema(schema)) for name, schema in sorted(SCHEMAS.items()))
    yield "lark", comp.compile_lark(LARK)
    yield "regex", comp.compile_regex(REGEX)
    yield "choices", comp.compile_choice(CHOICES)
    yield "lazy", comp.compile_json_schema(LAZY)  # a FoldedLexer: the numpy walk and the Python search


def test_trie_walk_equals_the_numpy_walk_on_grammar_lexers():
    """Every state of every (eager) lexer the walks meet, for each grammar over the small vocabulary."""
    tok = small_tokenizer()
    cols = byte_columns(tok)
    checked = 0
    for name, grammar in _grammars(GrammarCompiler(tok)):
        lexers = {}
        for config, _ in _walks(grammar, tok, random.Random(name), walks=4, steps=40):
            lexers[id(config[1])] = config[1]
        for lexer in lexers.values():
            if not isinstance(lexer, UnionLexer):
                continue  # lazy lexers take the numpy walk itself
            for q in range(lexer.num_states):
                _check_ends(cols, lexer, q, (name, q))
                checked += 1
    assert checked > 500


def _check_restrict(grammar, tok, rng, *, walks: int, steps: int) -> int:
    fast, ref = grammar.budget_masks, _Reference(grammar)
    cols = byte_columns(tok)
    compared = 0
    for config, left in _walks(grammar, tok, rng, walks=walks, steps=steps):
        words = grammar.masker.mask(config)
        assert allowed_rows(cols, words, tok.vocab_size).tolist() == \
            allowed_rows_numpy(cols, words, tok.vocab_size).tolist()
        own = int(fast.values(config, words)[2])  # the largest distance after any allowed token
        for budget in sorted({1, 2, left, left - 3, left + 5, own - 1, own, own + 1, own + 2, 4096}):
            if budget >= 1:
                got, want = fast.restrict(config, words, budget), ref.restrict(config, words, budget)
                assert got.tolist() == want.tolist(), (budget, config[2])
                compared += 1
    return compared


@pytest.mark.parametrize("name", [*sorted(SCHEMAS), "lark", "regex", "choices", "lazy"])
def test_restrict_equals_the_numpy_reference_bit_for_bit(name):
    tok = small_tokenizer()
    grammar = dict(_grammars(GrammarCompiler(tok)))[name]
    if name == "lazy":
        assert not isinstance(grammar.feed_bytes(grammar.initial_config(), b'{"s":"ab')[1], UnionLexer)
    assert _check_restrict(grammar, tok, random.Random(name), walks=6, steps=60) > 60


def test_restrict_equals_the_numpy_reference_on_a_real_vocabulary():
    """SmolLM2's 49k tokens: long tokens crossing string ends, many end states a scan."""
    comp = vocab_compiler("smollm2")
    grammar = comp.compile_json_schema(SCHEMAS["arrays"])
    assert _check_restrict(grammar, comp.tokenizer, random.Random(1), walks=3, steps=30) > 100

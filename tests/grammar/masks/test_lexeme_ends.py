"""The compiled lexeme-ends search (masks/lexeme_ends.py) against FinishDistance's Python search.

Every state of random lexers (random alive terminals, so the search may stop early or run out of states) and
of every eager lexer that walks of JSON Schema, Lark, regex and choice grammars meet, over a vocabulary with
every byte a token and one missing some (the search then steps only through single-byte tokens).
"""
from __future__ import annotations

import random

import numpy as np
import pytest

from lightllm_struct.grammar import GrammarCompiler, TokenizerInfo
from lightllm_struct.grammar.finish import _lexeme_ends
from lightllm_struct.grammar.lexing.lexer import UnionLexer
from lightllm_struct.grammar.masks.lexeme_ends import AVAILABLE, LexemeEnds
from tests.grammar.masks.test_scan_jit import random_lexer
from tests.grammar.masks.test_token_ends import _grammars, _walks
from tests.grammar.small_vocab import small_tokenizer

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="numba is not installed")


class _NoPython:
    """A FinishDistance stand-in that fails if the compiled path falls back to it."""

    def lexeme_ends(self, lexer, q):
        raise AssertionError("an eager lexer took the Python search")


def _usable(tok):
    return None if tok.every_byte_a_token else np.array(tok.single_bytes, dtype=np.int64)


@pytest.mark.parametrize("seed", range(5))
def test_random_lexers(seed):
    rng = random.Random(seed)
    tok = small_tokenizer()
    for density in (0.1, 0.4, 0.9):
        raw = random_lexer(rng, 12, density)
        n = len(raw.table)
        alive = [tuple(sorted(rng.sample(range(3), rng.randint(0, 3)))) for _ in range(n)]
        lexer = UnionLexer(uid=seed, terminals=frozenset(range(3)), table=raw.table, accept=raw.accept,
                           rows=[r.tolist() for r in raw.table], accept_list=raw.accept.tolist(),
                           signature=[()] * n, alive_terms=alive)
        ends = LexemeEnds(_NoPython(), tok)
        for q in range(n):
            assert ends.of(lexer, q) == _lexeme_ends(lexer, q, None), (density, q)


@pytest.mark.parametrize("missing", [False, True])
def test_grammar_lexers(missing):
    full = small_tokenizer()
    tok = TokenizerInfo.from_vocab([v for v in full.vocab if v not in (b"7", b"Z", b"~")], eos_token_ids=[0],
                                   special_token_ids=[1]) if missing else full
    assert tok.every_byte_a_token is not missing
    checked = 0
    for name, grammar in _grammars(GrammarCompiler(tok)):
        ends = LexemeEnds(_NoPython(), tok)
        lexers = {id(c[1]): c[1] for c, _ in _walks(grammar, tok, random.Random(name), walks=3, steps=30)}
        for lexer in lexers.values():
            if isinstance(lexer, UnionLexer):
                for q in range(lexer.num_states):
                    assert ends.of(lexer, q) == _lexeme_ends(lexer, q, _usable(tok)), (name, q)
                    checked += 1
    assert checked > 300

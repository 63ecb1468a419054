"""Wide root scans shared between states that agree on all strings of 16 bytes (scan_share).

A delta scan reuses a base scan's short tokens and shallow stuck nodes and walks only the long tokens'
trie; it must give exactly the full scan of its own state: checked on counter lexers over random
vocabularies (states near and far from the bound), and on the visited and every seventh state of real
JSON-schema lexers over the 128k Llama 3 vocabulary (bases shared across the lexers of three schemas).
"""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from lightllm_struct.grammar import GrammarCompiler, Matcher, TokenizerInfo
from lightllm_struct.grammar.masks.scan_jit import AVAILABLE, PreorderTrie, jit_scan
from lightllm_struct.grammar.masks.scan_share import (MAX_PAIRS, LongTokenTrie, SharedWideScans, _agree,
                                                _as_positions)
from lightllm_struct.grammar.masks.scan_trie import VocabTrie
from tests.grammar.masks.test_scan_jit import Lexer, random_vocab
from tests.grammar.vocab_fixtures import bench_spec, vocab_bundle

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="numba is not installed")


def canonical(words, groups):
    return words.tobytes(), sorted((t, tuple(sorted(n.tolist()))) for t, n in groups if len(n))


def counter_lexer(bound: int) -> Lexer:
    """Up to ``bound`` letters (a, b, the bytes of é, space), then a quote ending terminal 1; or terminal 2.

    State i has read i letters; states with more than ``length`` letters of room left are
    ``length``-equivalent, those nearer the bound are not.
    """
    table = np.full((bound + 2, 256), -1, dtype=np.int32)
    for i in range(bound):
        for b in b"ab \xc3\xa9":
            table[i, b] = i + 1
    table[: bound + 1, ord('"')] = bound + 1
    accept = np.full(bound + 2, 2, dtype=np.int32)  # every counting state may end terminal 2
    accept[bound + 1] = 1
    return Lexer(table, accept, [(1, 2)] * (bound + 2))


def full_scan(trie, lexer, q):
    return _as_positions(*jit_scan(trie, lexer, None, q), lexer, q)


@pytest.mark.parametrize("seed", range(4))
def test_delta_scans_of_counter_states_equal_full_scans(seed):
    rng = random.Random(seed)
    vocab = random_vocab(rng, 400)
    trie = PreorderTrie(VocabTrie(vocab, list(range(len(vocab)))), (len(vocab) + 31) // 32)
    bound, length = 45, rng.choice([2, 4, 8])
    lexer = counter_lexer(bound)
    long = LongTokenTrie(trie, length)
    base = long.shallow_part(*full_scan(trie, lexer, 0))
    for q in range(bound - length):  # more than ``length`` letters left: q and 0 agree on short strings
        got = long.delta_scan(lexer, q, *base)
        assert canonical(*got) == canonical(*full_scan(trie, lexer, q)), q
    # a state near the bound differs on short tokens: a delta from state 0 would be wrong, and is
    near = bound - 1
    assert canonical(*long.delta_scan(lexer, near, *base)) != canonical(*full_scan(trie, lexer, near))


@pytest.fixture(scope="module")
def llama3():
    vocab, eos, special = vocab_bundle("llama3")
    tok = TokenizerInfo.from_vocab(vocab, eos_token_ids=eos, special_token_ids=special)
    return tok, PreorderTrie(tok.trie, tok.num_words)


def test_shared_wide_scans_equal_full_scans_on_llama3(llama3):
    tok, trie = llama3
    shared = SharedWideScans(trie)  # one for all three schemas: bases cross grammars
    deltas = []
    delta_scan = shared.long.delta_scan
    shared.long.delta_scan = lambda *args: deltas.append(args[1]) or delta_scan(*args)
    checked = 0
    for stem in ["person", "nullable_fields", "user_profile_optional"]:
        grammar = GrammarCompiler(tok, scanner="trie_numpy").compile_json_schema(bench_spec(stem)["schema"])
        text = json.dumps(bench_spec(stem)["instance"], separators=(",", ":"), ensure_ascii=False).encode()
        config, lexers = grammar.initial_config(), {}
        for b in text:  # every lexer and state the instance passes through, byte by byte
            lexers.setdefault(config[1].uid, (config[1], set()))[1].add(config[2])
            config = grammar.feed_bytes(config, bytes([b]))
        for lexer, visited in lexers.values():
            for q in sorted(visited | set(range(0, lexer.num_states, 7))):
                lexer.signature[q]  # noqa: B018 - a lazy lexer makes the rows of a scan from q here
                got = shared.root_scan(lexer, q)
                assert canonical(*got) == canonical(*full_scan(trie, lexer, q)), (stem, lexer.uid, q)
                checked += 1
    assert checked > 60 and len(deltas) > 10, "too few states were served by a delta scan"


def test_masks_with_shared_scans_equal_numpy_masks(llama3):
    """Bounded strings end to end: masks of the default scanner equal the numpy walk's, step by step."""
    tok, _ = llama3
    spec = bench_spec("person")
    grammars = [GrammarCompiler(tok, scanner=kind).compile_json_schema(spec["schema"])
                for kind in ("trie", "trie_numpy")]
    data = json.dumps(spec["instance"], separators=(",", ":"), ensure_ascii=False).encode()
    matchers = [Matcher(g) for g in grammars]
    for pos in range(len(data) + 1):
        first, second = (m.allowed_token_ids() for m in matchers)
        assert first == second, pos
        if pos < len(data):
            assert all(m.accept_bytes(data[pos:pos + 1]) for m in matchers)


def test_agreement_of_counter_states():
    """States agree on ``length`` bytes exactly when both have room for ``length`` more letters."""
    bound = 30
    lexer = counter_lexer(bound)
    table = lexer.sink_table
    for length in (1, 4, 16):
        for p in range(bound):
            for q in range(bound):
                expected = p == q or (bound - p >= length and bound - q >= length)
                for same in (True, False):
                    got = _agree(table, lexer.accept, p, table, lexer.accept, q, same, length, MAX_PAIRS)
                    assert got == expected, (length, p, q)
    assert not _agree(table, lexer.accept, 0, table, lexer.accept, 1, True, 16, 1)  # over its budget
    other = counter_lexer(bound + 10)  # another lexer: states agree where both have room enough
    other_table = other.sink_table
    assert _agree(table, lexer.accept, 0, other_table, other.accept, 5, False, 16, MAX_PAIRS)
    assert not _agree(table, lexer.accept, 20, other_table, other.accept, 20, False, 16, MAX_PAIRS)

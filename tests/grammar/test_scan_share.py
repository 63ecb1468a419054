"""Wide root scans shared through short-horizon classes (scan_share) equal full scans.

A delta scan reuses a base scan's short tokens and shallow stuck nodes and walks only the long tokens'
trie; it must give exactly the full scan of its own state: checked on counter lexers over random
vocabularies (states near and far from the bound), and on the visited and every seventh state of real JSON-schema lexers
over the 128k Llama 3 vocabulary, product lexers of several terminals included.
"""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from lightllm_struct.grammar import GrammarCompiler, Matcher, TokenizerInfo
from lightllm_struct.grammar.scan_jit import AVAILABLE, PreorderTrie, jit_scan
from lightllm_struct.grammar.scan_share import MAX_PAIRS, LongTokenTrie, SharedWideScans, _agree
from lightllm_struct.grammar.scan_trie import VocabTrie
from tests.grammar.test_scan_jit import Lexer, random_vocab
from tests.grammar.vocab_fixtures import bench_spec, vocab_bundle

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="numba is not installed")


def canonical(words, groups):
    return words.tobytes(), sorted((term, tuple(sorted(nodes.tolist()))) for term, nodes in groups if len(nodes))


def counter_lexer(bound: int) -> Lexer:
    """Up to ``bound`` letters (a, b, é's bytes, space) then a quote ends terminal 1; a colon ends terminal 2.

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
    return Lexer(table, accept)


@pytest.mark.parametrize("seed", range(4))
def test_delta_scans_of_counter_states_equal_full_scans(seed):
    rng = random.Random(seed)
    vocab = random_vocab(rng, 400)
    trie = PreorderTrie(VocabTrie(vocab, list(range(len(vocab)))), (len(vocab) + 31) // 32)
    bound, length = 45, rng.choice([2, 4, 8])
    lexer = counter_lexer(bound)
    long = LongTokenTrie(trie, length)
    base = long.shallow_part(*jit_scan(trie, lexer, None, 0))
    for q in range(bound - length):  # more than ``length`` letters left: q and 0 agree on short strings
        got = long.delta_scan(lexer, q, *base)
        assert canonical(*got) == canonical(*jit_scan(trie, lexer, None, q)), q
    # a state near the bound differs on short tokens: a delta from state 0 would be wrong, and is
    near = bound - 1
    assert canonical(*long.delta_scan(lexer, near, *base)) != canonical(*jit_scan(trie, lexer, None, near))


@pytest.fixture(scope="module")
def llama3():
    vocab, eos, special = vocab_bundle("llama3")
    tok = TokenizerInfo.from_vocab(vocab, eos_token_ids=eos, special_token_ids=special)
    return tok, PreorderTrie(tok.trie, tok.num_words)


@pytest.mark.parametrize("stem", ["person", "nullable_fields", "user_profile_optional"])
def test_shared_wide_scans_equal_full_scans_on_llama3(llama3, stem):
    tok, trie = llama3
    grammar = GrammarCompiler(tok, scanner="trie_numpy").compile_json_schema(bench_spec(stem)["schema"])
    shared = SharedWideScans(trie)
    deltas = []
    delta_scan = shared.long.delta_scan
    shared.long.delta_scan = lambda *args: deltas.append(args[1]) or delta_scan(*args)
    text = json.dumps(bench_spec(stem)["instance"], separators=(",", ":"), ensure_ascii=False).encode()
    config, lexers = grammar.initial_config(), {}
    for b in text:  # every lexer and state the instance passes through, byte by byte
        lexers.setdefault(config[1].uid, (config[1], set()))[1].add(config[2])
        config = grammar.feed_bytes(config, bytes([b]))
    checked = 0
    for lexer, visited in lexers.values():
        for q in sorted(visited | set(range(0, lexer.num_states, 7))):
            lexer.signature[q]  # noqa: B018 - a lazy lexer makes the rows of a scan from q here
            got = shared.root_scan(lexer, q)
            assert canonical(*got) == canonical(*jit_scan(trie, lexer, None, q)), (lexer.uid, q)
            checked += 1
    assert checked > 20 and deltas, "no state was served by a delta scan"


def test_masks_with_shared_scans_equal_numpy_masks(llama3):
    """Bounded strings end to end: masks of the default scanner equal the numpy walk's, step by step."""
    tok, _ = llama3
    spec = bench_spec("person")
    grammars = [GrammarCompiler(tok, scanner=s).compile_json_schema(spec["schema"]) for s in ("trie", "trie_numpy")]
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
    table = lexer.table.reshape(-1)
    for length in (1, 4, 16):
        for p in range(bound):
            for q in range(bound):
                expected = p == q or (bound - p >= length and bound - q >= length)
                assert _agree(table, lexer.accept, p, q, length, MAX_PAIRS) == expected, (length, p, q)
    assert not _agree(table, lexer.accept, 0, 1, 16, 1)  # a pair walk over its budget never agrees

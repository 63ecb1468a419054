"""Compiled trie scans (scan_jit) against a per-token brute force and against the numpy trie walk.

Random vocabularies (duplicates, long tokens, shared prefixes) and random lexer tables check both compiled
walks, root scans and resumed frontiers, against running every token byte by byte; real lexers of JSON
schemas on the 128k Llama 3 vocabulary check them against the numpy walk; whole masks of the three
scanners agree step by step.
"""
from __future__ import annotations

import json
import random
from typing import NamedTuple

import numpy as np
import pytest

from lightllm_struct.grammar import GrammarCompiler, Matcher, TokenizerInfo
from lightllm_struct.grammar.bitmask import unpack_bitmask
from lightllm_struct.grammar.masks.scan_jit import AVAILABLE, PreorderTrie, jit_scan
from lightllm_struct.grammar.masks.scan_trie import VocabTrie, trie_scan
from tests.grammar.grammar_helpers import JSON_GRAMMAR
from tests.grammar.small_vocab import small_tokenizer
from tests.grammar.vocab_fixtures import bench_spec, encoder, vocab_bundle

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="numba is not installed")


class Lexer(NamedTuple):
    table: np.ndarray  # int32 [n, 256]
    accept: np.ndarray  # int32 [n]
    alive_terms: list = []  # per state, the terminals its groups may name (scan_share's positions)

    @property
    def sink_table(self) -> np.ndarray:
        """Flat int64 table plus an all-dead row, as ``UnionLexer.sink_table``."""
        return np.concatenate([self.table.reshape(-1), np.full(256, -1)]).astype(np.int64)


def random_vocab(rng: random.Random, size: int) -> list[bytes]:
    alphabet = b'ab"\\{}:,0\xc3\xa9 '
    vocab = [bytes([b]) for b in alphabet]
    while len(vocab) < size:
        if rng.random() < 0.05 and vocab:  # same bytes as an earlier token: an "extra" id
            vocab.append(rng.choice(vocab))
            continue
        n = rng.choice([1, 2, 3, 4, 6, 9, 17]) if rng.random() < 0.9 else rng.randint(20, 40)
        vocab.append(bytes(rng.choice(alphabet) for _ in range(n)))
    return vocab


def random_lexer(rng: random.Random, states: int, density: float) -> Lexer:
    table = np.full((states, 256), -1, dtype=np.int32)
    for q in range(states):
        for b in b'ab"\\{}:,0\xc3\xa9 ':
            if rng.random() < density:
                table[q, b] = rng.randrange(1, states) if states > 1 else 0
    accept = np.array([rng.randrange(3) if q and rng.random() < 0.5 else -1 for q in range(states)], np.int32)
    return Lexer(table, accept)


def brute_force(vocab, text_ids, lexer: Lexer, state: int, prefixes: list[bytes]):
    """(allowed token ids, {(terminal, stuck prefix)}) of tokens extending one of ``prefixes``.

    A token extending prefix p is run from ``state`` starting at p's last byte (a resumed frontier);
    for root scans the prefixes are the single bytes.
    """
    allowed, stuck = set(), set()
    for tid in text_ids:
        data = vocab[tid]
        for p in prefixes:
            if not data.startswith(p):
                continue
            q = state
            for i in range(len(p) - 1, len(data)):
                nq = int(lexer.table[q, data[i]])
                if nq < 0:
                    if lexer.accept[q] >= 0:
                        stuck.add((int(lexer.accept[q]), data[:i + 1]))
                    break
                q = nq
            else:
                allowed.add(tid)
    return allowed, stuck


def scan_result(words, groups, prefixes_of_node):
    allowed = set(np.flatnonzero(unpack_bitmask(words, 32 * len(words))).tolist())
    return allowed, {(term, prefixes_of_node[n]) for term, nodes in groups for n in nodes.tolist()}


@pytest.mark.parametrize("seed", range(6))
def test_random_lexers_match_brute_force(seed):
    rng = random.Random(seed)
    vocab = random_vocab(rng, 300)
    text_ids = list(range(len(vocab)))
    trie = PreorderTrie(VocabTrie(vocab, text_ids), (len(vocab) + 31) // 32)
    # preorder = lexicographic order of all distinct prefixes: node i spells prefixes[i]
    prefixes = sorted({v[:k] for v in vocab for k in range(1, len(v) + 1)})
    assert len(prefixes) == trie.num_nodes
    for states, density in [(1, 0.9), (3, 0.5), (8, 0.7), (20, 0.95)]:
        lexer = random_lexer(rng, states, density)
        for q in range(states):
            expected = brute_force(vocab, text_ids, lexer, q, sorted({v[:1] for v in vocab}))
            for wide in (False, True):
                assert scan_result(*jit_scan(trie, lexer, None, q, wide=wide), prefixes) == expected
            frontier = sorted(rng.sample(range(trie.num_nodes), 12))
            expected = brute_force(vocab, text_ids, lexer, q, [prefixes[n] for n in frontier])
            got = scan_result(*jit_scan(trie, lexer, np.array(frontier), q), prefixes)
            assert got == expected


def configs_of_trace(grammar, tok, text: str, vocab_name: str):
    """Every (stack, lexer, state) the grammar passes through on the tokenizer's encoding of ``text``."""
    config, configs = grammar.initial_config(), []
    for token in encoder(vocab_name)(text):
        configs.append(config)
        config = grammar.feed_bytes(config, tok.vocab[token])
        assert config is not None
    return configs


def normalized(words, groups, pre_of):
    return words.tobytes(), sorted((t, tuple(sorted(pre_of[n].tolist()))) for t, n in groups)


@pytest.mark.parametrize("stem", ["person", "tool_call_weather"])
def test_llama3_json_lexers_match_numpy_walk(stem):
    vocab, eos, special = vocab_bundle("llama3")
    tok = TokenizerInfo.from_vocab(vocab, eos_token_ids=eos, special_token_ids=special)
    grammar = GrammarCompiler(tok, scanner="trie_numpy").compile_json_schema(bench_spec(stem)["schema"])
    bfs, pre = tok.trie, PreorderTrie(tok.trie, tok.num_words)
    identity = np.arange(pre.num_nodes)
    text = json.dumps(bench_spec(stem)["instance"], separators=(",", ":"), ensure_ascii=False)
    seen, wide_seen = set(), 0
    for stack, lexer, q in configs_of_trace(grammar, tok, text, "llama3"):
        if (lexer.uid, q) in seen:
            continue
        seen.add((lexer.uid, q))
        allowed, groups = trie_scan(bfs, lexer, bfs.roots, q)
        expected = normalized(bfs.flags_to_words(allowed, tok.num_words), groups, pre.pre_of_bfs)
        for wide in (None, True):
            assert normalized(*jit_scan(pre, lexer, None, q, wide=wide), identity) == expected
        words, jit_groups = jit_scan(pre, lexer, None, q)
        wide_seen += unpack_bitmask(words, tok.vocab_size).sum() > tok.vocab_size // 2
        for (term, nodes), (_, bfs_nodes) in zip(jit_groups, sorted(groups, key=lambda g: g[0])):
            after = grammar.end_terminal(stack, term)
            if after is None:
                continue
            child = grammar.lexer_for(after)
            allowed, child_groups = trie_scan(bfs, child, bfs_nodes, 0)
            expected = normalized(bfs.flags_to_words(allowed, tok.num_words), child_groups, pre.pre_of_bfs)
            assert normalized(*jit_scan(pre, child, nodes, 0), identity) == expected
    assert wide_seen, "the trace never entered a state that allows most of the vocabulary"


@pytest.mark.parametrize("kind", ["lark", "schema"])
def test_masks_equal_across_scanners(kind):
    """Full token masks (descent into child nodes, EOS, caches) agree for all three scanners."""
    if kind == "lark":
        tok, source = small_tokenizer(), JSON_GRAMMAR
        texts = ['{"name":[1,true,null],"id":{"a b":"é\\n"}}', '[{},[],"x",-1.5e+3]']
    else:
        vocab, eos, special = vocab_bundle("llama3")
        tok = TokenizerInfo.from_vocab(vocab, eos_token_ids=eos, special_token_ids=special)
        source = bench_spec("address_book")["schema"]
        texts = [json.dumps(bench_spec("address_book")["instance"], separators=(",", ":"), ensure_ascii=False)]
    grammars = []
    for scanner in ("trie", "trie_numpy", "matrix"):
        compiler = GrammarCompiler(tok, scanner=scanner)
        grammars.append(compiler.compile_lark(source) if kind == "lark" else compiler.compile_json_schema(source))
    for text in texts:
        data = text.encode("utf-8")
        matchers = [Matcher(g) for g in grammars]
        for pos in range(len(data) + 1):
            masks = [m.allowed_token_ids() for m in matchers]
            assert masks[0] == masks[1] == masks[2], f"{text!r} at byte {pos}"
            if pos < len(data):
                assert all(m.accept_bytes(data[pos:pos + 1]) for m in matchers)
        assert (tok.eos_token_ids[0] in masks[0]) == matchers[0].is_complete()

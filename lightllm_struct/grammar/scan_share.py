"""Sharing wide root scans between lexer states that only long tokens tell apart.

Root scans are cached by the lexer-state signature, which tells states apart by everything the longest
token (128 bytes for Llama 3) could see. Inside a length-bounded JSON string every position is then its
own signature, and each one that lets most of the vocabulary through costs a full trie pass. But two
positions that no string of ``length`` bytes tells apart (both have more than ``length`` bytes of room
left) agree on every token of at most ``length`` bytes and on every stuck node that shallow; only the
few tokens longer than that differ. So the first wide scan of such a class is kept as a *base*, and
later states of the class take a delta scan that walks only the trie of the tokens longer than
``length`` bytes (17k of Llama 3's 275k nodes for 16 bytes).

The class of a product-lexer state is its signature with every component's horizon class coarsened to
its ``length``-byte class (``ByteDFA.bounded_classes``): the product accepts, rejects and prefers
terminals on strings of at most ``length`` bytes exactly as its components do.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from lightllm_struct.grammar.scan_jit import PreorderTrie, _arrays, _walk, is_wide, jit_scan

SHORT_LENGTH = 16  # tokens of at most this many bytes come from the base: 99.0% of Llama 3's


class SharedWideScans:
    """Root scans of one vocabulary with wide states served by deltas from a shared base (thread-safe)."""

    def __init__(self, trie: PreorderTrie, *, horizon: int, length: int = SHORT_LENGTH,
                 capacity: int = 256) -> None:
        self.trie = trie
        self.horizon = horizon  # the one lexer signatures were built with: the longest token
        self.length = length
        self.long = LongTokenTrie(trie, length)
        self._bases: OrderedDict = OrderedDict()
        self._coarse: dict[bytes, dict[int, int] | None] = {}
        self._capacity = capacity
        self._lock = threading.Lock()

    def root_scan(self, lexer, state: int, dfas) -> tuple:
        """(packed words, [(terminal, stuck preorder nodes)]) of the root scan from ``state``."""
        if dfas is None or self.length >= self.horizon or not is_wide(self.trie, lexer, state):
            return jit_scan(self.trie, lexer, None, state)
        key = self._short_key(lexer, state, dfas)
        base = self._bases.get(key)
        if base is not None:
            return self.long.delta_scan(lexer, state, *base)
        words, groups = jit_scan(self.trie, lexer, None, state, wide=True)
        with self._lock:
            self._bases[key] = self.long.shallow_part(words, groups)
            while len(self._bases) > self._capacity:
                self._bases.popitem(last=False)
        return words, groups

    def _short_key(self, lexer, state: int, dfas) -> tuple:
        is_start, comps = lexer.signature[state]
        key = []
        for (digest, cls), term in zip(comps, lexer.alive_terms[state]):
            coarse = self._coarse.get(digest)
            if coarse is None and digest not in self._coarse:
                coarse = self._coarse[digest] = _coarsening(dfas[term], self.horizon, self.length)
            # a DFA whose classes do not nest keeps its horizon classes: exact, just never shared
            key.append((digest, coarse[cls]) if coarse is not None else (digest, "horizon", cls))
        return (is_start, tuple(key))


def _coarsening(dfa, horizon: int, length: int) -> dict[int, int] | None:
    """Map from ``horizon``-byte classes to ``length``-byte classes, or None if they do not nest."""
    if not hasattr(dfa, "bounded_classes"):  # a lazily built DFA: its states are keyed by shape instead
        return None
    fine, coarse = dfa.bounded_classes(horizon), dfa.bounded_classes(length)
    out: dict[int, int] = {}
    for f, c in zip(fine, coarse):
        if out.setdefault(f, c) != c:
            return None
    return out


class LongTokenTrie:
    """The sub-trie of the tokens longer than ``length`` bytes, inside a ``PreorderTrie``.

    Its nodes are the trie nodes whose subtree reaches deeper than ``length`` (closed under ancestors,
    so in the same preorder they form a trie of their own); ``nodes`` maps them back.
    """

    def __init__(self, trie: PreorderTrie, length: int) -> None:
        self.trie, self.length = trie, length
        self.nodes = np.flatnonzero(trie.reach > length)
        self.byte, self.depth = trie.byte[self.nodes], trie.depth[self.nodes]
        self.reach, self.token = trie.reach[self.nodes], trie.token[self.nodes]
        self.skip = np.searchsorted(self.nodes, trie.skip[self.nodes]).astype(np.int64)
        self.roots = np.flatnonzero(self.depth == 1).astype(np.int64)
        counts = np.diff(trie.extra_ptr)
        keep = (trie.reach > length)[np.repeat(np.arange(trie.num_nodes), counts)]
        self.extra_token = trie.extra_token[keep]
        self.extra_ptr = np.concatenate([[0], np.cumsum(counts[self.nodes])]).astype(np.int32)
        flags = np.zeros(32 * trie.num_words, dtype=bool)  # tokens of at most ``length`` bytes
        flags[trie.token[(trie.depth <= length) & (trie.token >= 0)]] = True
        flags[trie.extra_token[np.repeat(trie.depth, counts) <= length]] = True
        self.short_words = np.packbits(flags, bitorder="little").view("<i4").astype(np.int32)

    def shallow_part(self, words: np.ndarray, groups: list) -> tuple:
        """What a base scan gives every state of its class: short tokens and shallow stuck nodes."""
        shallow = [(term, nodes[self.trie.depth[nodes] <= self.length]) for term, nodes in groups]
        return words & self.short_words, shallow

    def delta_scan(self, lexer, state: int, short_words: np.ndarray, shallow: list) -> tuple:
        """The root scan from ``state``, whose class shares ``shallow_part`` of a base scan.

        Same result as ``scan_jit.jit_scan(trie, lexer, None, state)`` (tests/grammar/test_scan_share.py).
        """
        table, accept = _arrays(lexer)
        n = len(self.nodes)
        stuck_node = np.empty(n, dtype=np.int64)
        stuck_term = np.empty(n, dtype=np.int32)
        words = np.zeros(self.trie.num_words + 1, dtype=np.uint32)
        n_stuck = _walk(self.byte, self.depth, self.skip, self.reach, self.token, self.extra_ptr,
                        self.extra_token, table, accept, self.roots, state, self.length, self.trie.max_depth,
                        words, stuck_node, stuck_term)
        deep: dict[int, list] = {}
        for node, term in zip(self.nodes[stuck_node[:n_stuck]].tolist(), stuck_term[:n_stuck].tolist()):
            deep.setdefault(term, []).append(node)
        groups = [(term, np.concatenate([nodes, np.array(deep.pop(term, []), dtype=np.int64)]))
                  for term, nodes in shallow]
        groups += [(term, np.array(nodes, dtype=np.int64)) for term, nodes in deep.items()]
        return words[:-1].view(np.int32) | short_words, [(t, nodes) for t, nodes in groups if len(nodes)]

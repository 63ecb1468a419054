"""Sharing wide root scans between lexer states that only long tokens tell apart.

Root scans are cached by the lexer-state signature, which tells states apart by everything the longest
token (128 bytes for Llama 3) could see. Inside a length-bounded JSON string every position is then its
own signature, and each one that lets most of the vocabulary through costs a full trie pass. But two
positions that no string of ``length`` bytes tells apart (both have more than ``length`` bytes of room
left) agree on every token of at most ``length`` bytes and on every stuck node that shallow; only the
few tokens longer than that differ. So a wide scan is kept as a *base* of its lexer, and a later state
of that lexer that agrees with a base on all strings of ``length`` bytes takes a delta scan that walks
only the trie of the tokens longer than ``length`` bytes (17k of Llama 3's 275k nodes for 16 bytes).

Agreement is checked directly on the lexer table by walking pairs of states over all byte strings of
up to ``length`` bytes (``_agree``): for a bounded string a handful of pairs a level, some microseconds.
"""
from __future__ import annotations

import threading
import weakref

import numpy as np

from lightllm_struct.grammar.scan_jit import AVAILABLE, PreorderTrie, _arrays, _walk, is_wide, jit_scan

SHORT_LENGTH = 16  # tokens of at most this many bytes come from the base: 99.0% of Llama 3's
BASES_PER_LEXER = 4  # recent bases a new wide state is compared with
MAX_PAIRS = 4096  # pair walks that grow beyond this count as disagreeing: a full scan, never a wrong one


def _agree(table, accept, p, q, length, max_pairs):  # pragma: no cover - compiled by numba
    """Whether states ``p`` and ``q`` scan alike on every byte string of at most ``length`` bytes.

    Alike: the same bytes continue, and where a byte stops both, the same terminal (or none) ends.
    """
    n = accept.shape[0]
    seen = {p * n + q}
    level = [(p, q)]
    for depth in range(length):
        nxt = [(p, q)][:0]
        for a, b in level:
            if a == b:
                continue
            for x in range(256):
                ta = np.int64(table[a * 256 + x])
                tb = np.int64(table[b * 256 + x])
                if (ta < 0) != (tb < 0):
                    return False
                if ta < 0:
                    if accept[a] != accept[b]:  # a byte stops both: the same terminal must end
                        return False
                    continue
                key = ta * n + tb
                if depth + 1 < length and ta != tb and key not in seen:
                    if len(seen) >= max_pairs:
                        return False
                    seen.add(key)
                    nxt.append((ta, tb))
        level = nxt
        if not level:
            break
    return True


if AVAILABLE:
    from numba import njit

    _agree = njit(nogil=True, cache=True)(_agree)


class SharedWideScans:
    """Root scans of one vocabulary; wide states served by deltas from a base of their lexer (thread-safe)."""

    def __init__(self, trie: PreorderTrie, *, length: int = SHORT_LENGTH) -> None:
        self.trie = trie
        self.length = length
        self.long = LongTokenTrie(trie, length)
        self._bases: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # lexer -> [(state, base)]
        self._lock = threading.Lock()
        table = np.full((2, 256), 1, dtype=np.int32)
        for dtype in (np.int32, np.int64):  # load (or compile) now, not inside a timed mask
            _agree(table.astype(dtype).reshape(-1), np.array([-1, 0], np.int32), 0, 1, 2, MAX_PAIRS)

    def root_scan(self, lexer, state: int) -> tuple:
        """(packed words, [(terminal, stuck preorder nodes)]) of the root scan from ``state``."""
        if self.length >= self.trie.max_depth or not is_wide(self.trie, lexer, state):
            return jit_scan(self.trie, lexer, None, state)
        table, accept = _arrays(lexer)
        bases = self._bases.get(lexer, [])
        for base_state, base in bases:
            if _agree(table, accept, base_state, state, self.length, MAX_PAIRS):
                return self.long.delta_scan(lexer, state, *base)
        words, groups = jit_scan(self.trie, lexer, None, state, wide=True)
        with self._lock:
            kept = [(state, self.long.shallow_part(words, groups))] + self._bases.get(lexer, [])
            self._bases[lexer] = kept[:BASES_PER_LEXER]
        return words, groups


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

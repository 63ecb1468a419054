"""Sharing wide root scans between lexer states that only long tokens tell apart.

Root scans are cached by the lexer-state signature, which tells states apart by everything the longest
token (128 bytes for Llama 3) could see. Inside a length-bounded JSON string every position is then its
own signature, and each one that lets most of the vocabulary through costs a full trie pass. But two
states that no string of ``length`` bytes tells apart (say two positions that both have more than
``length`` bytes of room left, or the same position type in two schemas) agree on every token of at most
``length`` bytes and on every stuck node that shallow; only the few longer tokens can differ. So a wide
scan is kept as a *base*, and a later wide state that agrees with a base takes a delta scan that walks
only the trie of the tokens longer than ``length`` bytes (17k of Llama 3's 275k nodes for 16 bytes).

Agreement is checked on the two lexer tables by walking pairs of states over all byte strings of up to
``length`` bytes (``_agree``); inside JSON strings (UTF-8 sub-states) that is some hundreds of pairs,
about 0.1 ms, against 0.5-1 ms for a full wide scan.
"""
from __future__ import annotations

import threading

import numpy as np

from lightllm_struct.grammar.masks.scan_jit import AVAILABLE, PreorderTrie, _arrays, _wide, is_wide, jit_scan

SHORT_LENGTH = 16  # tokens of at most this many bytes come from the base: 99.0% of Llama 3's
CANDIDATES = 3  # recent bases with the same first-byte pattern a new wide state is compared with
MAX_PAIRS = 512  # pair walks that grow beyond this count as disagreeing: a full scan, never a wrong one


def _agree(table_a, ends_a, p, table_b, ends_b, q, same, length, max_pairs):  # pragma: no cover - numba
    """Whether state ``p`` of lexer A and ``q`` of lexer B scan alike on all strings of ``length`` bytes.

    Alike: the same bytes continue, and where a byte stops both, the same terminal ends (``ends``: the
    ended terminal's position among the scan's alive terminals, or -1). ``same``: A is B, so equal
    states agree on everything.
    """
    seen = {p * 4294967296 + q}
    level = [(p, q)]
    for depth in range(length):
        nxt = [(p, q)][:0]
        for a, b in level:
            if same and a == b:
                continue
            last = -1
            for x in range(256):
                ta = np.int64(table_a[a * 256 + x])
                tb = np.int64(table_b[b * 256 + x])
                if (ta < 0) != (tb < 0):
                    return False
                if ta < 0:
                    if ends_a[a] != ends_b[b]:  # a byte stops both: the same terminal must end
                        return False
                    continue
                key = ta * 4294967296 + tb
                if key == last:  # neighbouring bytes mostly lead to the same pair: skip the set lookup
                    continue
                last = key
                if depth + 1 < length and key not in seen:
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
    """Root scans of one vocabulary; wide states served by deltas from agreeing bases (thread-safe).

    Bases are kept per pattern of first bytes a state accepts, from any lexer of any grammar over this
    vocabulary (a JSON string's interior looks the same in every schema); the groups of a scan are
    given as positions among the state's alive terminals (``UnionLexer.alive_terms``), which is what
    lets them cross grammars.
    """

    def __init__(self, trie: PreorderTrie, *, length: int = SHORT_LENGTH, capacity: int = 64) -> None:
        self.trie = trie
        self.length = length
        self.long = LongTokenTrie(trie, length)
        self._bases: dict[tuple, list] = {}  # first-byte pattern -> [(table, ends, state, base)]
        self._count = 0
        self._capacity = capacity
        self._lock = threading.Lock()
        table, ends = np.full(512, 1, np.int64), np.array([-1, 0], np.int32)  # load (or compile) now,
        _agree(table, ends, 0, table, ends, 1, False, 2, MAX_PAIRS)  # not inside a timed mask

    def root_scan(self, lexer, state: int) -> tuple:
        """(packed words, [(position among ``alive_terms[state]``, stuck preorder nodes)]) from ``state``."""
        state = int(state)  # configurations may carry numpy ints: one compiled signature for all calls
        if self.length >= self.trie.max_depth or not is_wide(self.trie, lexer, state):
            return _as_positions(*jit_scan(self.trie, lexer, None, state, wide=False), lexer, state)
        table, accept = _arrays(lexer)
        ends = _end_positions(accept, lexer.alive_terms[state])
        # what the first byte decides: which bytes continue, and what ends where one does not
        pattern = (np.packbits(table[state * 256:(state + 1) * 256] >= 0).tobytes(), int(ends[state]))
        candidates = self._bases.get(pattern, [])
        for i, (base_table, base_ends, base_state, base) in enumerate(candidates):
            # the same table memory (kept alive by the base): equal states agree, a shortcut
            same = base_table.ctypes.data == table.ctypes.data and len(base_table) == len(table)
            if _agree(base_table, base_ends, base_state, table, ends, state, same, self.length, MAX_PAIRS):
                if i:  # the positions of one string agree with the same base: try it first next time
                    with self._lock:
                        self._bases[pattern] = [candidates[i]] + candidates[:i] + candidates[i + 1:]
                return self.long.delta_scan(lexer, state, *base)
        words, groups = _as_positions(*jit_scan(self.trie, lexer, None, state, wide=True), lexer, state)
        with self._lock:
            if self._count >= self._capacity:  # start afresh: bases are cheap to remake
                self._bases, self._count = {}, 0
            entry = (table, ends, state, self.long.shallow_part(words, groups))
            self._bases[pattern] = [entry] + self._bases.get(pattern, [])[:CANDIDATES - 1]
            self._count += 1
        return words, groups


def _end_positions(accept: np.ndarray, alive: tuple) -> np.ndarray:
    """Per lexer state, the position among ``alive`` of the terminal it ends (-1: none or not alive)."""
    lookup = np.full(max(int(accept.max(initial=-1)), max(alive, default=-1)) + 2, -1, dtype=np.int32)
    lookup[list(alive)] = np.arange(len(alive), dtype=np.int32)
    return lookup[accept]  # accept -1 reads the last slot, which stays -1


def _as_positions(words: np.ndarray, groups: list, lexer, state: int) -> tuple:
    pos_of = {t: i for i, t in enumerate(lexer.alive_terms[state])}
    return words, [(pos_of[term], nodes) for term, nodes in groups]


class LongTokenTrie:
    """The sub-trie of the tokens longer than ``length`` bytes, inside a ``PreorderTrie``.

    Its nodes are the trie nodes whose subtree reaches deeper than ``length`` (closed under ancestors, so
    they form a trie of their own), kept in breadth-first order for the wide pass; ``pre`` maps them to
    preorder ids. Tokens of at most ``length`` bytes point at the spare mask word: the base has them.
    """

    def __init__(self, trie: PreorderTrie, length: int) -> None:
        self.trie, self.length = trie, length
        tall = np.flatnonzero(trie.reach[trie.pre_of_bfs] > length)  # breadth-first ids, in order
        self.pre = trie.pre_of_bfs[tall]
        self.depth = trie.depth[self.pre]
        parent = trie.bfs_parent[tall]
        roots_parent = len(tall)  # the spare slot of the wide pass's states
        self.parent = np.where(parent < trie.num_nodes, np.searchsorted(tall, parent), roots_parent)
        self.parent = self.parent.astype(np.int32)
        self.byte = trie.bfs_byte[tall]
        self.token = np.where(self.depth > length, trie.bfs_token[tall], 32 * trie.num_words).astype(np.int32)
        deep_extra = np.isin(trie.extra_node_bfs, tall[self.depth > length])
        self.extra_node = np.searchsorted(tall, trie.extra_node_bfs[deep_extra])
        self.extra_token = trie.extra_token_bfs[deep_extra]
        counts = np.diff(trie.extra_ptr)
        flags = np.zeros(32 * trie.num_words, dtype=bool)  # tokens of at most ``length`` bytes
        flags[trie.token[(trie.depth <= length) & (trie.token >= 0)]] = True
        flags[trie.extra_token[np.repeat(trie.depth, counts) <= length]] = True
        self.short_words = np.packbits(flags, bitorder="little").view("<i4").astype(np.int32)

    def shallow_part(self, words: np.ndarray, groups: list) -> tuple:
        """What a base scan gives every state that agrees with it: short tokens and shallow stuck nodes."""
        shallow = [(pos, nodes[self.trie.depth[nodes] <= self.length]) for pos, nodes in groups]
        return words & self.short_words, shallow

    def delta_scan(self, lexer, state: int, short_words: np.ndarray, shallow: list) -> tuple:
        """The root scan from ``state``, which agrees with the base of ``shallow_part`` up to ``length``.

        Same result as the full scan (tests/grammar/masks/test_scan_share.py).
        """
        table, accept = _arrays(lexer)
        state, n = int(state), len(self.pre)
        states = np.empty(n + 1, dtype=np.int32)
        stuck_node = np.empty(n, dtype=np.int64)
        stuck_term = np.empty(n, dtype=np.int32)
        words = np.zeros(self.trie.num_words + 1, dtype=np.uint32)
        n_stuck = _wide(self.parent, self.byte, self.token, table, accept, state, words, states, stuck_node,
                        stuck_term)
        extra = self.extra_token[states[self.extra_node] >= 0]
        np.bitwise_or.at(words, extra >> 5, np.left_shift(np.uint32(1), (extra & 31).astype(np.uint32)))
        pos_of = {t: i for i, t in enumerate(lexer.alive_terms[state])}
        deep: dict[int, list] = {}
        for node, term in zip(stuck_node[:n_stuck].tolist(), stuck_term[:n_stuck].tolist()):
            if self.depth[node] > self.length:  # shallower stuck nodes are the base's
                deep.setdefault(pos_of[term], []).append(int(self.pre[node]))
        groups = [(pos, np.concatenate([nodes, np.array(deep.pop(pos, []), dtype=np.int64)]))
                  for pos, nodes in shallow]
        groups += [(pos, np.array(nodes, dtype=np.int64)) for pos, nodes in deep.items()]
        return words[:-1].view(np.int32) | short_words, [(p, nodes) for p, nodes in groups if len(nodes)]

"""Token-trie scan: the lexer runs once per distinct token prefix instead of once per token byte.

Nodes are the distinct prefixes of the text tokens in breadth-first order, each level sorted
lexicographically, so a node's children are contiguous in the next level. A scan walks a frontier of
nodes level by level (vectorized over the level), dropping a whole subtree as soon as its prefix gets
stuck. For Llama 3 that is 275k nodes against 831k token bytes, and restrictive lexer states touch
only a few hundred nodes.
"""
from __future__ import annotations

import numpy as np


class VocabTrie:
    """Breadth-first token trie over the distinct byte strings of the text tokens."""

    def __init__(self, vocab: list[bytes], text_ids: list[int]) -> None:
        uniq = sorted({vocab[i] for i in text_ids})
        uidx = {s: i for i, s in enumerate(uniq)}
        self.num_unique = len(uniq)
        # token id -> unique index (num_unique for non-text ids): turns unique flags into token flags
        self.token_uidx = np.full(len(vocab), len(uniq), dtype=np.int64)
        for i in text_ids:
            self.token_uidx[i] = uidx[vocab[i]]
        # unique index -> its smallest token id, plus the rarer extra ids sharing the same bytes
        self.first_token = np.full(len(uniq), -1, dtype=np.int64)
        extra_u, extra_t = [], []
        for i in sorted(text_ids):
            u = uidx[vocab[i]]
            if self.first_token[u] < 0:
                self.first_token[u] = i
            else:
                extra_u.append(u)
                extra_t.append(i)
        self.extra_uidx = np.array(extra_u, dtype=np.int64)
        self.extra_token = np.array(extra_t, dtype=np.int64)
        levels: list[dict[bytes, int]] = [{b"": -1}]
        for s in uniq:
            for k in range(1, len(s) + 1):
                if len(levels) <= k:
                    levels.append({})
                levels[k].setdefault(s[:k], -1)
        self._build_arrays(levels, uidx)

    # what a trie is, for the on-disk cache (vocab/trie_cache.py): every attribute, all arrays or ints
    FIELDS = ("num_unique", "token_uidx", "first_token", "extra_uidx", "extra_token", "byte", "end_uidx",
              "child_count", "child_start", "roots", "num_nodes", "max_depth", "level_starts", "node_token",
              "extra_node")

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(getattr(self, name)) for name in self.FIELDS}

    @classmethod
    def from_arrays(cls, arrays) -> "VocabTrie":
        """The trie whose ``arrays()`` these are.

        Raises
        ------
        KeyError
            A field is missing.
        """
        trie = cls.__new__(cls)
        for name in cls.FIELDS:
            value = arrays[name]
            setattr(trie, name, int(value) if value.ndim == 0 else value)
        return trie

    def _build_arrays(self, levels: list[dict[bytes, int]], uidx: dict[bytes, int]) -> None:
        node_bytes, parents, ends, starts = [], [], [], []
        parent_ids = {b"": -1}
        for depth in range(1, len(levels)):
            starts.append(len(node_bytes))
            level = levels[depth]
            for prefix in level:  # insertion order is lexicographic: uniq was sorted
                level[prefix] = len(node_bytes)
                node_bytes.append(prefix[-1])
                parents.append(parent_ids[prefix[:-1]])
                ends.append(uidx.get(prefix, -1))
            parent_ids = level
        n = len(node_bytes)
        self.byte = np.array(node_bytes, dtype=np.int64)
        self.end_uidx = np.array(ends, dtype=np.int64)
        parent = np.array(parents, dtype=np.int64)
        counts = np.bincount(parent[parent >= 0], minlength=n)
        self.child_count = counts.astype(np.int64)
        # children of consecutive parents are consecutive: the first child follows the level's start
        first_level_end = starts[1] if len(starts) > 1 else n
        self.child_start = first_level_end + np.cumsum(counts) - counts
        self.roots = np.arange(first_level_end, dtype=np.int64)
        self.num_nodes = n
        self.max_depth = len(starts)
        self.level_starts = np.array(starts, dtype=np.int64)
        # token ids per node, for walks that set mask bits directly: the smallest id, plus the node of
        # every extra id sharing those bytes
        has_end = np.flatnonzero(self.end_uidx >= 0)
        self.node_token = np.full(n, -1, dtype=np.int64)
        self.node_token[has_end] = self.first_token[self.end_uidx[has_end]]
        node_of_uidx = np.zeros(self.num_unique, dtype=np.int64)
        node_of_uidx[self.end_uidx[has_end]] = has_end
        self.extra_node = node_of_uidx[self.extra_uidx]

    def flags_to_words(self, uniq_indices: np.ndarray, num_words: int) -> np.ndarray:
        """Packed int32 words of every token whose bytes are one of ``uniq_indices``."""
        if len(uniq_indices) < num_words:  # few tokens: set their bits directly
            ids = self.first_token[uniq_indices]
            if len(self.extra_uidx):
                ids = np.concatenate([ids, self.extra_token[np.isin(self.extra_uidx, uniq_indices)]])
            words = np.zeros(num_words, dtype=np.uint32)
            np.bitwise_or.at(words, ids >> 5, np.left_shift(np.uint32(1), (ids & 31).astype(np.uint32)))
            return words.view(np.int32)
        flags = np.zeros(self.num_unique + 1, dtype=bool)
        flags[uniq_indices] = True
        tok_flags = np.zeros(num_words * 32, dtype=bool)
        tok_flags[:len(self.token_uidx)] = flags[self.token_uidx]
        return np.packbits(tok_flags, bitorder="little").view("<i4").astype(np.int32, copy=False)


def trie_scan(trie: VocabTrie, lexer, nodes: np.ndarray, state: int):
    """Run ``lexer`` from ``state`` over the subtrees of ``nodes`` (all of one depth).

    While most of a level is alive the frontier stays a contiguous node range (dead subtrees ride
    along in a sink state), so per-node data is sliced rather than gathered; once most of it is dead
    the frontier is compacted to an index array.

    Returns
    -------
    (allowed unique indices, [(terminal, stuck nodes)])
        Tokens that stay inside the lexer, and per terminal the nodes at which a token gets stuck
        where that terminal ends (the node's byte is the first byte after the terminal).
    """
    sink = lexer.num_states
    table = lexer.sink_table
    accept = lexer.accept
    span = _as_range(nodes)
    states = np.full(len(nodes), state, dtype=np.int64)
    allowed: list[np.ndarray] = []
    stuck_parts: dict[int, list[np.ndarray]] = {}
    while len(states):
        if span is not None:
            lo, hi = span
            byte, ends, counts = trie.byte[lo:hi], trie.end_uidx[lo:hi], trie.child_count[lo:hi]
        else:
            byte, ends, counts = trie.byte[nodes], trie.end_uidx[nodes], trie.child_count[nodes]
        nxt = table[(states << 8) | byte]
        dead = nxt < 0
        stuck = dead & (states != sink)
        if stuck.any():
            where = np.flatnonzero(stuck)
            terms = accept[states[where]]
            ids = (where + span[0]) if span is not None else nodes[where]
            for term in np.unique(terms[terms >= 0]).tolist():
                stuck_parts.setdefault(term, []).append(ids[terms == term])
        nxt[dead] = sink
        alive = ~dead
        allowed.append(ends[alive & (ends >= 0)])
        n_alive = int(np.count_nonzero(alive))
        if not n_alive:
            break
        if span is not None and 2 * n_alive >= len(states):
            first = int(trie.child_start[span[0]])
            span = (first, first + int(counts.sum()))
            states = np.repeat(nxt, counts)
            continue
        keep = np.flatnonzero(alive)
        parents = (keep + span[0]) if span is not None else nodes[keep]
        counts, nxt = counts[keep], nxt[keep]
        total = int(counts.sum())
        offsets = np.repeat(trie.child_start[parents] - (np.cumsum(counts) - counts), counts)
        nodes = offsets + np.arange(total, dtype=np.int64)
        states = np.repeat(nxt, counts)
        span = None
    groups = [(term, np.concatenate(parts)) for term, parts in stuck_parts.items()]
    return (np.concatenate(allowed) if allowed else np.zeros(0, dtype=np.int64)), groups


def _as_range(nodes: np.ndarray) -> tuple[int, int] | None:
    if len(nodes) and int(nodes[-1]) - int(nodes[0]) + 1 == len(nodes):
        return int(nodes[0]), int(nodes[-1]) + 1
    return None

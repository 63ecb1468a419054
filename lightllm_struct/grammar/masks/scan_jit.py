"""Token-trie scans compiled with numba, a few nanoseconds a trie node.

The numpy walk (``scan_trie.trie_scan``) pays about ten array operations per trie level, so a lexer
state that lets most of the vocabulary through (inside a JSON string) costs milliseconds: the 128k Llama 3
vocabulary has 275k trie nodes over 128 levels. Two compiled walks replace it, and the allowed tokens'
bits go straight into the packed mask:

* *narrow* scans (few first bytes alive, and every resumed frontier) walk the trie in preorder, where a
  subtree is a contiguous node range: the node arrays are read front to back and a rejected prefix skips
  its whole subtree with one jump;
* *wide* scans make one pass over all nodes in breadth-first order, a node's state computed from its
  parent's: no dependency between neighbouring iterations and no unpredictable branch on the tree shape,
  about twice as fast per node as the preorder walk when nearly everything is visited anyway.

Results equal the numpy walk's (``tests/grammar/masks/test_scan_jit.py``); without numba the token masks use
the numpy walk.
"""
from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np

try:
    from numba import njit
except ImportError:  # pragma: no cover - numba is a dependency; the numpy walk covers its absence
    njit = None

AVAILABLE = njit is not None


def _preorder(child_start, child_count, roots, num_nodes):  # pragma: no cover - compiled by numba
    """Preorder position of every breadth-first node, and each preorder node's subtree end."""
    pre_of = np.empty(num_nodes, np.int64)
    skip = np.empty(num_nodes, np.int64)
    stack_node = np.empty(num_nodes + 1, np.int64)
    stack_open = np.empty(num_nodes + 1, np.bool_)  # False: enter the node; True: close its subtree
    count = 0
    sp = 0
    for r in range(roots.shape[0] - 1, -1, -1):
        stack_node[sp] = roots[r]
        stack_open[sp] = False
        sp += 1
    while sp > 0:
        sp -= 1
        node = stack_node[sp]
        if stack_open[sp]:
            skip[pre_of[node]] = count
            continue
        pre_of[node] = count
        count += 1
        stack_node[sp] = node
        stack_open[sp] = True
        sp += 1
        first = child_start[node]
        for c in range(first + child_count[node] - 1, first - 1, -1):  # smallest byte on top
            stack_node[sp] = c
            stack_open[sp] = False
            sp += 1
    return pre_of, skip


def _walk(byte, depth, skip, token, extra_ptr, extra_token, table, accept, starts, state, max_depth, words,
          stuck_node, stuck_term):  # pragma: no cover - compiled by numba
    """Run the lexer ``table`` from ``state`` over the subtrees of the preorder nodes ``starts``.

    Sets in ``words`` the bit of every token whose bytes all stay inside the lexer. A token that meets
    a byte without transition where the state accepts a terminal is recorded once, at that node, in
    ``stuck_node`` / ``stuck_term``; the subtree below a stuck node is never visited. Returns the
    number of stuck nodes.
    """
    states = np.empty(max_depth + 1, np.int64)  # states[d]: lexer state after the node at depth d
    n_stuck = 0
    for k in range(starts.shape[0]):
        i = starts[k]
        end = skip[i]
        states[depth[i] - 1] = state
        while i < end:
            s = states[depth[i] - 1]
            nxt = table[s * 256 + byte[i]]
            if nxt < 0:
                term = accept[s]
                if term >= 0:
                    stuck_node[n_stuck] = i
                    stuck_term[n_stuck] = term
                    n_stuck += 1
                i = skip[i]
                continue
            states[depth[i]] = nxt
            tid = token[i]
            if tid >= 0:
                words[tid >> 5] |= np.uint32(1 << (tid & 31))
                for j in range(extra_ptr[i], extra_ptr[i + 1]):
                    t2 = extra_token[j]
                    words[t2 >> 5] |= np.uint32(1 << (t2 & 31))
            i += 1
    return n_stuck


def _reach(parent, depth, num_nodes):  # pragma: no cover - compiled by numba
    """Deepest level below each breadth-first node (children come after their parents)."""
    reach = depth.copy()
    for n in range(num_nodes - 1, -1, -1):
        p = parent[n]
        if p < num_nodes and reach[n] > reach[p]:
            reach[p] = reach[n]
    return reach


def _wide(parent, byte, token, table, accept, state, words, states, stuck_node,
          stuck_term):  # pragma: no cover - compiled by numba
    """One breadth-first pass over all nodes from ``state``; returns the number of stuck nodes.

    ``states`` gets every node's lexer state (-1: dead), plus the roots' parent slot at the end;
    ``token`` points non-token nodes at a spare last word of ``words``.
    """
    n_nodes = byte.shape[0]
    states[n_nodes] = state
    n_stuck = 0
    for n in range(n_nodes):
        s = states[parent[n]]
        if s < 0:  # rare: the wide pass runs only when nearly everything stays alive
            states[n] = -1
            continue
        nxt = table[s * 256 + byte[n]]
        states[n] = nxt
        if nxt < 0:
            term = accept[s]
            if term >= 0:
                stuck_node[n_stuck] = n
                stuck_term[n_stuck] = term
                n_stuck += 1
        else:
            tid = token[n]
            words[tid >> 5] |= np.uint32(1) << np.uint32(tid & 31)
    return n_stuck


def _alive_share(roots, skip, byte, table, state, two_bytes):  # pragma: no cover - compiled by numba
    """How many trie nodes lie below the one- (or two-) byte prefixes the lexer accepts from ``state``.

    Two bytes tell more: a third of a vocabulary starts with a space, and a state that takes a space
    and then only digits (a phone-number pattern) is narrow.
    """
    total = 0
    for r in roots:
        nxt = table[state * 256 + byte[r]]
        if nxt < 0:
            continue
        if not two_bytes:
            total += skip[r] - r
            continue
        total += 1
        c = r + 1
        while c < skip[r]:  # the children of r, in preorder
            if table[nxt * 256 + byte[c]] >= 0:
                total += skip[c] - c
            c = skip[c]
    return total


if AVAILABLE:
    _preorder = njit(cache=True)(_preorder)
    _walk = njit(nogil=True, cache=True)(_walk)
    _reach = njit(cache=True)(_reach)
    _wide = njit(nogil=True, cache=True)(_wide)
    _alive_share = njit(nogil=True, cache=True)(_alive_share)


class PreorderTrie:
    """A ``VocabTrie`` in the two layouts of the compiled walks.

    Preorder (narrow walks; node ids in groups and frontiers): a node's subtree is
    ``[node, skip[node])``. Breadth-first (wide pass): ``bfs_parent`` per node, the roots' parent being
    the extra slot ``num_nodes``.
    """

    def __init__(self, trie, num_words: int) -> None:
        n = trie.num_nodes
        self.num_nodes = n
        self.num_words = num_words
        self.max_depth = trie.max_depth
        self.pre_of_bfs, self.skip = _preorder(trie.child_start, trie.child_count, trie.roots, n)
        bfs_of = np.empty(n, dtype=np.int64)
        bfs_of[self.pre_of_bfs] = np.arange(n, dtype=np.int64)
        self.byte = trie.byte[bfs_of].astype(np.uint8)  # bytes as uint8: less memory traffic a pass
        level_sizes = np.diff(np.append(trie.level_starts, n))
        self.depth = np.empty(n, dtype=np.int32)
        self.depth[self.pre_of_bfs] = np.repeat(np.arange(1, trie.max_depth + 1), level_sizes)
        self.token = trie.node_token[bfs_of].astype(np.int32)
        # tokens sharing their bytes with a smaller id: CSR by preorder node (rare)
        extra_nodes = self.pre_of_bfs[trie.extra_node]
        order = np.argsort(extra_nodes, kind="stable")
        self.extra_token = trie.extra_token[order].astype(np.int32)
        self.extra_ptr = np.searchsorted(extra_nodes[order], np.arange(n + 1)).astype(np.int32)
        self.roots = np.sort(self.pre_of_bfs[trie.roots])
        self.bfs_parent = np.full(n, n, dtype=np.int32)
        self.bfs_parent[trie.child_start[0] if n else 0:] = np.repeat(
            np.arange(n, dtype=np.int32), trie.child_count)
        self.bfs_byte = trie.byte.astype(np.uint8)
        # non-token nodes and tokens extra to their bytes' first id: the wide pass handles one id a node
        self.bfs_token = np.where(trie.node_token >= 0, trie.node_token, 32 * num_words).astype(np.int32)
        self.extra_node_bfs, self.extra_token_bfs = trie.extra_node, trie.extra_token
        depth_bfs = np.repeat(np.arange(1, trie.max_depth + 1, dtype=np.int32), level_sizes)
        self.reach = np.empty(n, dtype=np.int32)
        self.reach[self.pre_of_bfs] = _reach(self.bfs_parent, depth_bfs, n)
        self._scratch = threading.local()
        self._warm_up()

    def scratch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This thread's (node states, stuck nodes, stuck terminals) buffers, reused across scans.

        Fresh megabyte arrays cost page faults on every scan; results never keep views of these.
        """
        got = getattr(self._scratch, "buffers", None)
        if got is None:
            n = self.num_nodes
            got = self._scratch.buffers = (np.empty(n + 1, dtype=np.int32), np.empty(n, dtype=np.int64),
                                           np.empty(n, dtype=np.int32))
        return got

    def _warm_up(self) -> None:
        """Load (or compile) both walks now, with the real argument types, not inside a timed mask."""
        for row in (-1, 0):  # all rejected: the preorder walk; all accepted: the wide pass
            jit_scan(self, _Lexer(np.full(512, row, np.int64), np.full(1, -1, np.int32)), None, 0)


class _Lexer(NamedTuple):
    sink_table: np.ndarray
    accept: np.ndarray


def jit_scan(trie: PreorderTrie, lexer, nodes: np.ndarray | None, state: int, *, wide: bool | None = None):
    """Scan like ``scan_trie.trie_scan``; ``nodes`` are preorder ids of any depths (None: the roots).

    ``wide`` picks the walk of a root scan (None: the breadth-first pass when the first bytes the lexer
    accepts lead to over a third of the trie; frontiers always take the preorder walk).

    Returns
    -------
    (packed int32 words of the allowed tokens, [(terminal, stuck preorder nodes)])
    """
    table, accept = _arrays(lexer)
    state = int(state)  # configurations may carry numpy ints: one compiled signature for all calls
    states, stuck_node, stuck_term = trie.scratch()
    words = np.zeros(trie.num_words + 1, dtype=np.uint32)
    if wide is None:
        wide = nodes is None and is_wide(trie, lexer, state)
    if wide and nodes is None:
        n_stuck = _wide(trie.bfs_parent, trie.bfs_byte, trie.bfs_token, table, accept, state, words, states,
                        stuck_node, stuck_term)
        stuck_node[:n_stuck] = trie.pre_of_bfs[stuck_node[:n_stuck]]
        extra = trie.extra_token_bfs[states[trie.extra_node_bfs] >= 0]
        np.bitwise_or.at(words, extra >> 5, np.left_shift(np.uint32(1), (extra & 31).astype(np.uint32)))
    else:
        starts = trie.roots if nodes is None else np.ascontiguousarray(nodes, np.int64)
        n_stuck = _walk(trie.byte, trie.depth, trie.skip, trie.token, trie.extra_ptr, trie.extra_token, table,
                        accept, starts, state, trie.max_depth, words, stuck_node, stuck_term)
    return words[:-1].view(np.int32), _groups(stuck_node[:n_stuck], stuck_term[:n_stuck])


def is_wide(trie: PreorderTrie, lexer, state: int) -> bool:
    """Whether the first bytes ``lexer`` accepts from ``state`` lead to over a third of the trie."""
    table, _ = _arrays(lexer)
    return all(3 * _alive_share(trie.roots, trie.skip, trie.byte, table, state, two) > trie.num_nodes
               for two in (False, True))  # the one-byte bound first: it settles most narrow states


def _arrays(lexer) -> tuple[np.ndarray, np.ndarray]:
    """The flat int64 transition table (``sink_table``: every lexer has one) and the accept array.

    One table type for every lexer keeps one compiled version of each walk. Lazily built lexers
    (``lazy_lexer.py``) fill rows of that table in place and publish ``accept`` first, so the table is
    read first and never copied.
    """
    table = lexer.sink_table
    return table, lexer.accept


def _groups(nodes: np.ndarray, terms: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Stuck nodes split by terminal, each part in ascending node order."""
    if len(nodes) < 64:  # the common case: a few stuck nodes, where numpy's sort and split cost more
        parts: dict[int, list[int]] = {}
        for node, term in sorted(zip(nodes.tolist(), terms.tolist())):
            parts.setdefault(term, []).append(node)
        return [(term, np.array(part, dtype=np.int64)) for term, part in sorted(parts.items())]
    order = np.lexsort((nodes, terms))
    terms, nodes = terms[order], nodes[order]
    cuts = np.flatnonzero(np.diff(terms)) + 1
    return [(int(t[0]), part) for t, part in zip(np.split(terms, cuts), np.split(nodes, cuts))]

"""The compiled token-ends walk: the preorder token trie run by one lexer, results written per token row.

``token_ends.token_ends_numpy`` steps every token byte column by column (2-4 ms at 49k tokens, for each new
lexer state a walk reaches). Here the lexer runs once per distinct token prefix, in preorder (the layout of
``scan_jit``): a node's state comes from its parent's, the rows of the tokens ending at the node take that
state, and a node without transition settles its whole subtree at once: its rows are one contiguous range of
``node_rows`` (preorder keeps a subtree contiguous), FRESH when it is a first byte, CROSS (at the node's
depth, as the terminal its parent state accepts) further in, DEAD when that state accepts nothing (the rows'
default, so a dead subtree costs one jump). A last pass numbers the distinct end states in ascending order,
as ``np.unique`` does in the numpy walk, so both give the same arrays.
"""
from __future__ import annotations

import threading

import numpy as np

from lightllm_struct.grammar.masks.scan_jit import AVAILABLE, njit, _preorder

_DEAD, _FRESH, _CROSS = -1, -2, -3  # token_ends' codes (that module imports this one)
_INT16 = (1 << 15) - 1  # lexers with fewer states get int16 codes (2 bytes a token in the scan cache)


def _ends(byte, depth, skip, roots, node_ptr, node_rows, table, accept, q, max_depth, num_states, code,
          cross_rows, cross_cols, cross_terms, inner):  # pragma: no cover - compiled by numba
    """Fill ``code`` (every row) and the first CROSS records lexing from ``q``; returns the ascending end
    states and the number of CROSS records (in preorder)."""
    code[:] = _DEAD
    states = np.empty(max_depth + 1, np.int64)  # states[d]: lexer state after the node at depth d
    n_cross = 0
    n_inner = 0  # rows that stay inside the lexeme, listed in ``inner``: the numbering reads only them
    rank = np.full(num_states, -1, np.int64)
    for k in range(roots.shape[0]):
        i = roots[k]
        end = skip[i]
        states[0] = q
        while i < end:
            d = depth[i]
            s = states[d - 1]
            nxt = table[s * 256 + byte[i]]
            if nxt < 0:
                if accept[s] >= 0:  # the lexeme ends before this byte: the whole subtree's rows at once
                    n_cross = _settle(code, node_rows, node_ptr[i], node_ptr[skip[i]], d, accept[s], cross_rows,
                                      cross_cols, cross_terms, n_cross)
                i = skip[i]  # DEAD rows keep their default
                continue
            states[d] = nxt
            lo, hi = node_ptr[i], node_ptr[i + 1]
            if lo < hi:
                rank[nxt] = 0
                for j in range(lo, hi):
                    r = node_rows[j]
                    code[r] = nxt  # the state itself for now (code's type holds every state)
                    inner[n_inner] = r
                    n_inner += 1
            i += 1
    uniq = _number(rank)
    for j in range(n_inner):
        r = inner[j]
        code[r] = rank[code[r]]
    return uniq, n_cross


def _settle(code, node_rows, lo, hi, d, term, cross_rows, cross_cols, cross_terms,
            n_cross):  # pragma: no cover - compiled by numba
    """The rows ``node_rows[lo:hi]`` of a subtree stuck at depth ``d`` where ``term`` ends: FRESH on a first
    byte, else CROSS records (at column ``d - 1``); returns the new number of CROSS records."""
    if d == 1:
        for j in range(lo, hi):
            code[node_rows[j]] = _FRESH
        return n_cross
    for j in range(lo, hi):
        r = node_rows[j]
        code[r] = _CROSS
        cross_rows[n_cross] = r
        cross_cols[n_cross] = d - 1
        cross_terms[n_cross] = term
        n_cross += 1
    return n_cross


def _number(rank):  # pragma: no cover - compiled by numba
    """``rank``: 0 for the states present, -1 elsewhere; becomes each present state's rank in ascending order
    (``np.unique``'s numbering). Returns the present states."""
    count = 0
    for s in range(rank.shape[0]):
        if rank[s] >= 0:
            rank[s] = count
            count += 1
    uniq = np.empty(count, np.int64)
    for s in range(rank.shape[0]):
        if rank[s] >= 0:
            uniq[rank[s]] = s
    return uniq


def _ends_wide(parent, byte, depth, row_node, table, accept, q, num_states, code, cross_rows, cross_cols,
               cross_terms, node_state, stuck_col, stuck_term):  # pragma: no cover - compiled by numba
    """``_ends`` in one breadth-first pass over every node (``_wide_nodes``), then one pass over the rows in
    order (so the CROSS records come out ascending). For states that let most of the trie through: no
    dependency between neighbouring iterations, no branch on the tree's shape."""
    _wide_nodes(parent, byte, depth, table, accept, q, node_state, stuck_col, stuck_term)
    n_rows = row_node.shape[0]
    rank = np.full(num_states, -1, np.int64)
    for r in range(n_rows):
        v = node_state[row_node[r]]
        if v >= 0:
            rank[v] = 0
    uniq = _number(rank)
    n_cross = 0
    for r in range(n_rows):
        v = node_state[row_node[r]]
        if v >= 0:
            code[r] = rank[v]
        elif v > _CROSS:
            code[r] = v
        else:
            code[r] = _CROSS
            cross_rows[n_cross] = r
            cross_cols[n_cross] = stuck_col[-4 - v]
            cross_terms[n_cross] = stuck_term[-4 - v]
            n_cross += 1
    return uniq, n_cross


def _wide_nodes(parent, byte, depth, table, accept, q, node_state, stuck_col,
                stuck_term):  # pragma: no cover - compiled by numba
    """Every breadth-first node's result from its parent's: a lexer state, DEAD, FRESH, or ``-4 - k`` for the
    k-th stuck record (column ``stuck_col[k]``, terminal ``stuck_term[k]``), inherited by the subtree."""
    n_nodes = byte.shape[0]
    node_state[n_nodes] = q  # the roots' parent slot
    k = 0
    for n in range(n_nodes):
        s = node_state[parent[n]]
        if s < 0:  # settled above
            node_state[n] = s
            continue
        nxt = table[s * 256 + byte[n]]
        if nxt >= 0:
            node_state[n] = nxt
            continue
        term = accept[s]
        if term < 0:
            node_state[n] = _DEAD
        elif depth[n] == 1:
            node_state[n] = _FRESH
        else:
            stuck_col[k] = depth[n] - 1
            stuck_term[k] = term
            node_state[n] = -4 - k
            k += 1


def _alive_nodes(roots, skip, byte, table, q):  # pragma: no cover - compiled by numba
    """Trie nodes under the first bytes ``table`` accepts from ``q`` (preorder layout)."""
    total = 0
    for r in roots:
        if table[q * 256 + byte[r]] >= 0:
            total += skip[r] - r
    return total


if AVAILABLE:
    _settle = njit(nogil=True, cache=True)(_settle)
    _number = njit(nogil=True, cache=True)(_number)
    _wide_nodes = njit(nogil=True, cache=True)(_wide_nodes)
    _ends = njit(nogil=True, cache=True)(_ends)
    _ends_wide = njit(nogil=True, cache=True)(_ends_wide)
    _alive_nodes = njit(nogil=True, cache=True)(_alive_nodes)


class TrieRows:
    """The token trie in preorder with the rows of ``row_token`` (``ByteColumns``' order) per node.

    Parameters
    ----------
    trie:
        The vocabulary's breadth-first ``VocabTrie`` (its text tokens are the rows).
    row_token:
        The token id of every row.
    """

    def __init__(self, trie, row_token: np.ndarray) -> None:
        n = trie.num_nodes
        pre_of_bfs, self.skip = _preorder(trie.child_start, trie.child_count, trie.roots, n)
        bfs_of = np.empty(n, dtype=np.int64)
        bfs_of[pre_of_bfs] = np.arange(n, dtype=np.int64)
        self.byte = trie.byte[bfs_of].astype(np.uint8)
        level_sizes = np.diff(np.append(trie.level_starts, n))
        self.depth = np.empty(n, dtype=np.int32)
        self.depth[pre_of_bfs] = np.repeat(np.arange(1, trie.max_depth + 1), level_sizes)
        self.max_depth = int(trie.max_depth)
        self.roots = np.sort(pre_of_bfs[trie.roots])
        has_end = np.flatnonzero(trie.end_uidx >= 0)
        node_of_uidx = np.zeros(trie.num_unique, dtype=np.int64)
        node_of_uidx[trie.end_uidx[has_end]] = has_end
        row_node = pre_of_bfs[node_of_uidx[trie.token_uidx[row_token]]]
        self.node_rows = np.argsort(row_node, kind="stable").astype(np.int64)
        # skip[i] may be n (the last subtree): node_ptr has n + 1 entries
        self.node_ptr = np.searchsorted(row_node[self.node_rows], np.arange(n + 1)).astype(np.int64)
        self.num_rows = len(row_token)
        # breadth-first layout for the wide pass: parent (the roots': the extra slot n), byte, depth, row -> node
        self.bfs_parent = np.full(n, n, dtype=np.int32)
        self.bfs_parent[trie.child_start[0] if n else 0:] = np.repeat(np.arange(n, dtype=np.int32), trie.child_count)
        self.bfs_byte = trie.byte.astype(np.uint8)
        self.bfs_depth = np.repeat(np.arange(1, trie.max_depth + 1, dtype=np.int32), level_sizes)
        self.row_node_bfs = node_of_uidx[trie.token_uidx[row_token]].astype(np.int32)
        self._local = threading.local()
        self._warm_up()

    def ends(self, table: np.ndarray, accept: np.ndarray, num_states: int, q: int, *, wide: bool | None = None):
        """``TokenEnds``' fields lexing from ``q`` with the flat ``table`` (``sink_table``); ``code`` is int16
        when every state fits (then every rank does). ``wide`` picks the walk (None: the breadth-first pass
        when the first bytes ``q`` accepts lead to over a third of the trie, as ``scan_jit.is_wide``)."""
        n = self.num_rows
        code = np.empty(n, dtype=np.int16 if num_states < _INT16 else np.int32)
        cross_rows, cross_cols, cross_terms, node_state, stuck_col, stuck_term, inner = self._scratch()
        if wide is None:
            wide = 3 * _alive_nodes(self.roots, self.skip, self.byte, table, q) > len(self.byte)
        if wide:
            uniq, n_cross = _ends_wide(self.bfs_parent, self.bfs_byte, self.bfs_depth, self.row_node_bfs, table,
                                       accept, q, num_states, code, cross_rows, cross_cols, cross_terms, node_state,
                                       stuck_col, stuck_term)
            return code, uniq, cross_rows[:n_cross].copy(), cross_cols[:n_cross].copy(), cross_terms[:n_cross].copy()
        uniq, n_cross = _ends(self.byte, self.depth, self.skip, self.roots, self.node_ptr, self.node_rows, table,
                              accept, q, self.max_depth, num_states, code, cross_rows, cross_cols, cross_terms, inner)
        order = np.argsort(cross_rows[:n_cross], kind="stable")
        return code, uniq, cross_rows[order], cross_cols[order], cross_terms[order]

    def _scratch(self) -> tuple:
        """This thread's buffers (CROSS records: a row each at most; node states; stuck records: a node each at
        most; rows inside the lexeme), reused: fresh megabyte arrays cost page faults on every scan, and results
        keep copies only."""
        got = getattr(self._local, "buffers", None)
        if got is None:
            n = len(self.byte)
            got = self._local.buffers = (*(np.empty(self.num_rows, dtype=np.int32) for _ in range(3)),
                                         *(np.empty(size, dtype=np.int32) for size in (n + 1, n, n)),
                                         np.empty(self.num_rows, dtype=np.int32))
        return got

    def _warm_up(self) -> None:
        """Load (or compile) the kernels now, with the real argument types, not inside a timed mask."""
        for num_states in (1, _INT16):  # int16 and int32 codes, both walks
            for wide in (False, True, None):  # None: the choice's own kernel too
                self.ends(np.full(512, -1, np.int64), np.full(1, -1, np.int32), num_states, 0, wide=wide)

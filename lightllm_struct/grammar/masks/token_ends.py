"""Where each text token ends when lexed from one lexer state: the stack-free half of the budget check.

Budget-aware masks (``budget.py``) need, per lexer state ``(lexer, q)``, where every text token of the
vocabulary ends: inside the lexeme in some lexer state, stuck on its first byte (the lexeme ends there), stuck
further in (the lexeme ends inside the token), or dead. Two walks give the same :class:`TokenEnds`:

* a compiled walk of the preorder token trie (``ends_jit.py``), a few nanoseconds a trie node: each node's
  lexer state comes from its parent's, the tokens ending at a node take its result, and a node that gets
  stuck hands its result to its whole subtree (a contiguous range of rows in preorder) without walking it;
* the numpy walk (one array step per byte column over the whole vocabulary, 2-4 ms at 49k tokens): the
  reference, and the path of lazy lexers, whose scan tables hold only the rows a mask scan needed (the
  exact rows come from ``lexer.rows``), and of a process without numba.

``tests/grammar/masks/test_token_ends.py`` checks the two agree array for array.
"""
from __future__ import annotations

import numpy as np

from lightllm_struct.grammar.lexing.lexer import UnionLexer
from lightllm_struct.grammar.masks import ends_jit, lexeme_ends, rows_jit

DEAD, FRESH, CROSS = -1, -2, -3
_INT16_STATES = (1 << 15) - 1  # codes of scans with fewer distinct end states are kept as int16


class TokenEnds:
    """Where each text token (a row of :class:`ByteColumns`) ends when lexed from one lexer state.

    ``code[row]``: an index into ``states`` (the token stays inside the lexeme and ends there), ``DEAD``,
    ``FRESH`` (its first byte ends the lexeme) or ``CROSS`` (it ends the lexeme further in: at
    ``cross_cols``, as terminal ``cross_terms``, for the ascending rows ``cross_rows``). Independent of the
    stack. ``code`` is int16 when ``states`` allows (a scan kept in a cache costs 2 bytes a token).
    """

    __slots__ = ("code", "states", "cross_rows", "cross_cols", "cross_terms")

    def __init__(self, code, states, cross_rows, cross_cols, cross_terms) -> None:
        if code.dtype != np.int16 and len(states) < _INT16_STATES:
            code = code.astype(np.int16)
        self.code, self.states = code, states
        self.cross_rows, self.cross_cols, self.cross_terms = cross_rows, cross_cols, cross_terms

    @property
    def nbytes(self) -> int:
        return self.code.nbytes + self.states.nbytes + 3 * self.cross_rows.nbytes


class ByteColumns:
    """Text tokens as uint8 byte columns ``[width, rows]``, rows sorted by length (one per vocabulary),
    and the same rows in the order of the preorder token trie (``ends_jit.TrieRows``) for the compiled walk."""

    def __init__(self, tok) -> None:
        ids = sorted(tok.text_ids, key=lambda i: len(tok.vocab[i]))
        self.row_token = np.array(ids, dtype=np.int64)
        self.row_len = np.array([len(tok.vocab[i]) for i in ids], dtype=np.int64)
        width = int(self.row_len.max()) if ids else 1
        n = len(ids)
        starts = np.repeat(np.cumsum(self.row_len) - self.row_len, self.row_len)
        rows = np.repeat(np.arange(n), self.row_len)
        data = np.frombuffer(b"".join(tok.vocab[i] for i in ids), dtype=np.uint8)
        columns = np.zeros(width * n, dtype=np.uint8)  # written column-major at once: no transpose
        columns[(np.arange(len(data)) - starts) * n + rows] = data
        self.columns = columns.reshape(width, n)
        self.row_of_token = np.full(tok.vocab_size, -1, dtype=np.int64)
        self.row_of_token[self.row_token] = np.arange(len(ids))
        self.trie_rows = ends_jit.TrieRows(tok.trie, self.row_token) if ends_jit.AVAILABLE and ids else None
        lexeme_ends.warm_up()  # the budget check's other kernels: here, at the vocabulary's set-up, too
        rows_jit.warm_up()


def byte_columns(tok) -> ByteColumns:
    return tok.shared("budget_columns", lambda: ByteColumns(tok))


def token_ends(matrix: ByteColumns, lexer, q: int) -> TokenEnds:
    """Where every text token ends lexed by ``lexer`` from ``q`` (the compiled trie walk where it applies)."""
    if matrix.trie_rows is not None and isinstance(lexer, UnionLexer):
        return TokenEnds(*matrix.trie_rows.ends(lexer.sink_table, lexer.accept, lexer.num_states, int(q)))
    return token_ends_numpy(matrix, lexer, q)


def allowed_rows(matrix: ByteColumns, words: np.ndarray, vocab_size: int) -> np.ndarray:
    """The ascending rows of the text tokens the packed int32 mask ``words`` allows."""
    if rows_jit.AVAILABLE:
        return rows_jit.allowed_rows(words, matrix.row_token, matrix.row_of_token)
    return allowed_rows_numpy(matrix, words, vocab_size)


def allowed_rows_numpy(matrix: ByteColumns, words: np.ndarray, vocab_size: int) -> np.ndarray:
    ids = np.flatnonzero(np.unpackbits(words.view(np.uint8), bitorder="little")[:vocab_size])
    rows = matrix.row_of_token[ids]
    return np.sort(rows[rows >= 0])


def token_ends_numpy(matrix: ByteColumns, lexer, q: int) -> TokenEnds:
    """Run ``lexer`` from ``q`` over every text token at once (one numpy step per byte column)."""
    n = len(matrix.row_token)
    state = np.full(n, q, dtype=np.int64)
    stuck_col = np.full(n, -1, dtype=np.int64)
    stuck_term = np.full(n, -1, dtype=np.int64)
    accept = np.asarray(lexer.accept, dtype=np.int64) if isinstance(lexer, UnionLexer) else None
    idx = np.arange(n)  # rows still inside the lexeme, ascending (so by length: ended rows are a prefix)
    for col in range(matrix.columns.shape[0]):
        idx = idx[np.searchsorted(idx, np.searchsorted(matrix.row_len, col, side="right")):]
        if not len(idx):
            break
        cur = state[idx]
        nxt = _step(lexer, cur, matrix.columns[col][idx].astype(np.int64))
        stuck = nxt < 0
        if stuck.any():
            rows = idx[stuck]
            stuck_col[rows] = col
            stuck_term[rows] = _accepts(lexer, accept, cur[stuck])
            idx, nxt = idx[~stuck], nxt[~stuck]
        state[idx] = nxt
    code = np.full(n, DEAD, dtype=np.int32)
    inner = np.flatnonzero(stuck_col < 0)
    states, inverse = np.unique(state[inner], return_inverse=True)
    code[inner] = inverse
    stuck = np.flatnonzero(stuck_term >= 0)
    code[stuck[stuck_col[stuck] == 0]] = FRESH
    cross = stuck[stuck_col[stuck] > 0]
    code[cross] = CROSS
    return TokenEnds(code, states, cross.astype(np.int32), stuck_col[cross].astype(np.int32),
                     stuck_term[cross].astype(np.int32))


def _step(lexer, states: np.ndarray, data: np.ndarray) -> np.ndarray:
    if isinstance(lexer, UnionLexer):
        return lexer.table[states, data].astype(np.int64)
    uniq, inv = np.unique(states, return_inverse=True)  # lazy lexers: exact rows, made on demand
    rows = np.stack([np.fromiter(lexer.rows[int(s)], dtype=np.int64, count=256) for s in uniq.tolist()])
    return rows[inv, data]


def _accepts(lexer, accept: np.ndarray, states: np.ndarray) -> np.ndarray:
    if isinstance(lexer, UnionLexer):
        return accept[states]
    return np.array([lexer.accept_list[int(s)] for s in states.tolist()], dtype=np.int64)

"""Budget-aware masks: drop the tokens after which the shortest finish no longer fits the tokens left.

With ``left`` tokens to go (this one included), token ``t`` stays allowed iff the shortest finish after
it, in bytes, is at most ``left - 1``: every single byte is a token of a byte-level vocabulary, so the
finish can always be spelt in that many tokens, and the output is a whole sentence by the last one.
Followed step by step this is an invariant: a configuration whose shortest finish fits keeps at least
the first byte of that finish allowed, so the mask is never empty and the answer ends valid.

The distance after every token of the vocabulary is computed at once, per configuration (cached):

* a vectorized run of the lexer from ``(lexer, q)`` over the length-sorted token bytes says where each
  token ends (cached per lexer state: it reads no stack): inside the lexeme in some lexer state, whose
  distance needs only a few stack completions per terminal; or stuck on its first byte, where the
  lexeme ends and the whole token is lexed again from the boundary (the same computation one
  configuration on); or stuck further in, fed from the boundary one distinct remainder at a time;
* only tokens the mask allows are followed past a boundary.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from lightllm_struct.grammar.bitmask import pack_token_ids, unpack_bitmask
from lightllm_struct.grammar.lexing.lexer import UnionLexer
from lightllm_struct.grammar.parsing.distance import INF

_SCANS = 128  # token scans kept per grammar (each 4 bytes a vocabulary token)
_VALUES = 32  # per-configuration distance arrays kept (4 bytes a vocabulary token)
_REMAINDERS = 1 << 14


class TokenEnds:
    """Where each text token (a row of :class:`ByteColumns`) ends when lexed from one lexer state.

    ``code[row]``: an index into ``states`` (the token stays inside the lexeme and ends there), ``DEAD``,
    ``FRESH`` (its first byte ends the lexeme) or ``CROSS`` (it ends the lexeme further in: at
    ``cross_cols``, as terminal ``cross_terms``, for the rows ``cross_rows``). Independent of the stack.
    """

    __slots__ = ("code", "states", "cross_rows", "cross_cols", "cross_terms")

    def __init__(self, code, states, cross_rows, cross_cols, cross_terms) -> None:
        self.code, self.states = code, states
        self.cross_rows, self.cross_cols, self.cross_terms = cross_rows, cross_cols, cross_terms


DEAD, FRESH, CROSS = -1, -2, -3


class BudgetMasks:
    """Restricts one grammar's masks to the tokens whose shortest finish fits (thread-safe caches).

    Parameters
    ----------
    grammar:
        The :class:`~lightllm_struct.grammar.compiled.CompiledGrammar`.
    """

    def __init__(self, grammar) -> None:
        self.grammar = grammar
        self.dist = grammar.distances
        self._tok = grammar.tokenizer
        byte_columns(self._tok)  # once per vocabulary, here (the compile thread) rather than in a step
        self._scans: OrderedDict = OrderedDict()
        self._values: OrderedDict = OrderedDict()
        self._remainders: dict = {}
        self._lock = threading.Lock()

    def restrict(self, config, words: np.ndarray, left: int) -> np.ndarray:
        """``words`` (a packed mask, not written) without the tokens whose finish exceeds ``left - 1``.

        Returns ``words`` itself when nothing is dropped. EOS bits are kept: EOS ends a whole sentence.
        """
        rows, values, worst = self.values(config, words)
        if worst <= left - 1:
            return words
        tokens = byte_columns(self._tok).row_token
        out = words & ~pack_token_ids(tokens[rows[values > left - 1]], self._tok.num_words)
        if not out.any():  # only reachable if a distance was underestimated: the closest, never an empty row
            out = words & pack_token_ids(tokens[rows[values == values.min()]], self._tok.num_words)
        return out

    def values(self, config, words: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
        """The text tokens ``words`` allows (default: the configuration's mask), as ascending rows of
        :class:`ByteColumns`; the shortest finish after each (``INF`` where not followed); the largest."""
        stack, lexer, q = config
        key = (id(stack), lexer.uid, q)
        hit = self._values.get(key)
        if hit is not None and hit[0] is stack:
            return hit[1]
        if words is None:
            words = self.grammar.masker.mask(config)
        cols = byte_columns(self._tok)
        ids = np.flatnonzero(np.unpackbits(words.view(np.uint8), bitorder="little")[:self._tok.vocab_size])
        rows = cols.row_of_token[ids]
        rows = np.sort(rows[rows >= 0])
        values = self._compute(config, rows)
        got = (rows, values, float(values.max()) if len(values) else 0.0)
        with self._lock:
            self._values[key] = (stack, got)
            while len(self._values) > _VALUES:
                self._values.popitem(last=False)
        return got

    def _compute(self, config, rows: np.ndarray) -> np.ndarray:
        stack, lexer, q = config
        ends = self._ends(lexer, q)
        inner = np.array([self.dist.in_lexeme(stack, lexer, u) for u in ends.states.tolist()] + [INF], dtype=np.float32)
        code = ends.code[rows]
        values = inner[np.where(code >= 0, code, len(inner) - 1)]  # dead and crossing rows: INF for now
        fresh = np.flatnonzero(code == FRESH)
        if len(fresh):
            after = self.grammar.end_terminal(stack, lexer.accept_list[q])
            if after is not None:
                sub_rows, sub_values, _ = self.values((after, self.grammar.lexer_for(after), 0))
                at = np.minimum(np.searchsorted(sub_rows, rows[fresh]), max(len(sub_rows) - 1, 0))
                if len(sub_rows):
                    values[fresh] = np.where(sub_rows[at] == rows[fresh], sub_values[at], INF)
        cross = np.flatnonzero(code == CROSS)
        if len(cross):
            at = np.searchsorted(ends.cross_rows, rows[cross])
            row_token = byte_columns(self._tok).row_token
            for i, row, col, term in zip(cross.tolist(), rows[cross].tolist(), ends.cross_cols[at].tolist(),
                                         ends.cross_terms[at].tolist()):
                values[i] = self._remainder(stack, term, self._tok.vocab[int(row_token[row])][col:])
        return values

    def _remainder(self, stack, term: int, data: bytes) -> float:
        """The finish after ending ``term`` on ``stack`` and then feeding ``data``."""
        key = (id(stack), term, data)
        hit = self._remainders.get(key)
        if hit is not None and hit[0] is stack:
            return hit[1]
        after = self.grammar.end_terminal(stack, term)
        fed = None if after is None else self.grammar.feed_bytes((after, self.grammar.lexer_for(after), 0), data)
        value = INF if fed is None else self.dist.of(fed)
        if len(self._remainders) >= _REMAINDERS:
            self._remainders = {}
        self._remainders[key] = (stack, value)
        return value

    def _ends(self, lexer, q: int) -> TokenEnds:
        key = (lexer.uid, q)
        got = self._scans.get(key)
        if got is None:
            got = token_ends(byte_columns(self._tok), lexer, q)
            with self._lock:
                self._scans[key] = got
                while len(self._scans) > _SCANS:
                    self._scans.popitem(last=False)
        return got


class ByteColumns:
    """Text tokens as uint8 byte columns ``[width, rows]``, rows sorted by length (one per vocabulary)."""

    def __init__(self, tok) -> None:
        ids = sorted(tok.text_ids, key=lambda i: len(tok.vocab[i]))
        self.row_token = np.array(ids, dtype=np.int64)
        self.row_len = np.array([len(tok.vocab[i]) for i in ids], dtype=np.int64)
        width = int(self.row_len.max()) if ids else 1
        flat = np.zeros((len(ids), width), dtype=np.uint8)
        starts = np.repeat(np.cumsum(self.row_len) - self.row_len, self.row_len)
        rows = np.repeat(np.arange(len(ids)), self.row_len)
        data = np.frombuffer(b"".join(tok.vocab[i] for i in ids), dtype=np.uint8)
        flat[rows, np.arange(len(data)) - starts] = data
        self.columns = np.ascontiguousarray(flat.T)
        self.row_of_token = np.full(tok.vocab_size, -1, dtype=np.int64)
        self.row_of_token[self.row_token] = np.arange(len(ids))


def byte_columns(tok) -> ByteColumns:
    return tok.shared("budget_columns", lambda: ByteColumns(tok))


def token_ends(matrix: ByteColumns, lexer, q: int) -> TokenEnds:
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

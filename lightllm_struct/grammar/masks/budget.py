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

_SCANS = 64  # token scans kept per grammar (each ~12 bytes a vocabulary token)
_VALUES = 16  # per-configuration distance arrays kept (4 bytes a vocabulary token)
_REMAINDERS = 1 << 14


class TokenEnds:
    """Where each text token ends when lexed from one lexer state (independent of the stack)."""

    __slots__ = ("inner_ids", "states", "inverse", "fresh_ids", "cross_ids", "cross_cols", "cross_terms")

    def __init__(self, inner_ids, inner_states, fresh_ids, cross_ids, cross_cols, cross_terms) -> None:
        self.inner_ids = inner_ids  # tokens that stay inside the lexeme
        self.states, self.inverse = np.unique(inner_states, return_inverse=True)
        self.fresh_ids = fresh_ids  # tokens whose first byte already ends the lexeme
        self.cross_ids, self.cross_cols, self.cross_terms = cross_ids, cross_cols, cross_terms


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
        self._scans: OrderedDict = OrderedDict()
        self._values: OrderedDict = OrderedDict()
        self._remainders: dict = {}
        self._lock = threading.Lock()

    def restrict(self, config, words: np.ndarray, left: int) -> np.ndarray:
        """``words`` (a packed mask, not written) without the tokens whose finish exceeds ``left - 1``.

        Returns ``words`` itself when nothing is dropped. EOS bits are kept: EOS ends a whole sentence.
        """
        values, worst = self.values(config, words)
        if worst <= left - 1:
            return words
        drop = np.flatnonzero(values > left - 1)
        out = words & ~pack_token_ids(drop, self._tok.num_words)
        eos = self.grammar.masker.eos_mask
        if not (out & ~eos).any() and not (out & eos).any():
            # only reachable if a distance was underestimated: the closest tokens, never an empty row
            allowed = unpack_bitmask(words, self._tok.vocab_size)
            best = values[allowed].min() if allowed.any() else INF
            out = words & pack_token_ids(np.flatnonzero(values == best), self._tok.num_words)
        return out

    def values(self, config, words: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """Shortest finish after each token (``INF`` where not followed), and the largest among ``words``."""
        stack, lexer, q = config
        key = (id(stack), lexer.uid, q)
        hit = self._values.get(key)
        if hit is not None and hit[0] is stack:
            return hit[1], hit[2]
        if words is None:
            words = self.grammar.masker.mask(config)
        allowed = unpack_bitmask(words, self._tok.vocab_size)
        values = self._compute(config, allowed)
        text = allowed.copy()
        text[list(self._tok.eos_token_ids)] = False
        worst = float(values[text].max()) if text.any() else 0.0
        with self._lock:
            self._values[key] = (stack, values, worst)
            while len(self._values) > _VALUES:
                self._values.popitem(last=False)
        return values, worst

    def _compute(self, config, allowed: np.ndarray) -> np.ndarray:
        stack, lexer, q = config
        ends = self._ends(lexer, q)
        values = np.full(self._tok.vocab_size, INF, dtype=np.float32)
        for eos in self._tok.eos_token_ids:
            values[eos] = 0.0
        inner = np.array([self._from_state(stack, lexer, int(u)) for u in ends.states.tolist()], dtype=np.float32)
        if len(inner):
            values[ends.inner_ids] = inner[ends.inverse]
        fresh = ends.fresh_ids[allowed[ends.fresh_ids]]
        if len(fresh):
            after = self.grammar.end_terminal(stack, lexer.accept_list[q])
            if after is not None:
                sub, _ = self.values((after, self.grammar.lexer_for(after), 0))
                values[fresh] = sub[fresh]
        picked = allowed[ends.cross_ids]
        for tid, col, term in zip(ends.cross_ids[picked].tolist(), ends.cross_cols[picked].tolist(),
                                  ends.cross_terms[picked].tolist()):
            values[tid] = self._remainder(stack, term, self._tok.vocab[tid][col:])
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

    def _from_state(self, stack, lexer, u: int) -> float:
        best = INF
        for length, term in self.dist.lexeme_ends(lexer, u):
            if length >= best:
                break
            best = min(best, length + self.dist.after_terminal(stack, term))
        return best

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
    """Text tokens as uint8 byte columns, rows sorted by length (one per vocabulary, ~1 byte a token byte)."""

    def __init__(self, tok) -> None:
        ids = sorted(tok.text_ids, key=lambda i: len(tok.vocab[i]))
        self.row_token = np.array(ids, dtype=np.int64)
        self.row_len = np.array([len(tok.vocab[i]) for i in ids], dtype=np.int64)
        width = int(self.row_len.max()) if ids else 1
        flat = np.zeros((len(ids), width), dtype=np.uint8)
        for row, i in enumerate(ids):
            flat[row, :len(tok.vocab[i])] = np.frombuffer(tok.vocab[i], dtype=np.uint8)
        self.columns = np.ascontiguousarray(flat.T)


def byte_columns(tok) -> ByteColumns:
    return tok.shared("budget_columns", lambda: ByteColumns(tok))


def token_ends(matrix: ByteColumns, lexer, q: int) -> TokenEnds:
    """Run ``lexer`` from ``q`` over every text token at once (one numpy step per byte column)."""
    n = len(matrix.row_token)
    state = np.full(n, q, dtype=np.int64)
    alive = np.ones(n, dtype=bool)
    stuck_col = np.full(n, -1, dtype=np.int64)
    stuck_term = np.full(n, -1, dtype=np.int64)
    accept = np.asarray(lexer.accept, dtype=np.int64) if isinstance(lexer, UnionLexer) else None
    for col in range(matrix.columns.shape[0]):
        first = int(np.searchsorted(matrix.row_len, col, side="right"))
        idx = first + np.flatnonzero(alive[first:])
        if not len(idx):
            break
        cur = state[idx]
        nxt = _step(lexer, cur, matrix.columns[col][idx].astype(np.int64))
        stuck = nxt < 0
        if stuck.any():
            rows = idx[stuck]
            alive[rows] = False
            stuck_col[rows] = col
            stuck_term[rows] = _accepts(lexer, accept, cur[stuck])
        state[idx[~stuck]] = nxt[~stuck]
    inner = np.flatnonzero(alive)
    stuck = np.flatnonzero(stuck_term >= 0)
    fresh = stuck[stuck_col[stuck] == 0]
    cross = stuck[stuck_col[stuck] > 0]
    return TokenEnds(matrix.row_token[inner], state[inner], matrix.row_token[fresh], matrix.row_token[cross],
                     stuck_col[cross], stuck_term[cross])


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

"""Budget-aware masks: drop the tokens after which the shortest finish no longer fits the tokens left.

With ``left`` tokens to go (this one included), token ``t`` stays allowed iff the shortest finish after
it, in bytes, is at most ``left - 1``: every single byte is a token of the vocabulary (checked when the
vocabulary is set up, ``TokenizerInfo.every_byte_a_token``), so the finish can always be spelt in that many
tokens, and the output is a whole sentence by the last one. Followed step by step this is an invariant: a
configuration whose shortest finish fits keeps at least the first byte of that finish allowed, so the mask
is never empty and the answer ends valid. It runs at every step, however far the budget: no margin.

The distance after every token of the vocabulary is computed at once, per configuration:

* a run of the lexer from ``(lexer, q)`` over the token trie (``token_ends.py``) says where each
  token ends (cached per lexer state: it reads no stack): inside the lexeme in some lexer state, whose
  distance needs only a few stack completions per terminal; or stuck on its first byte, where the
  lexeme ends and the whole token is lexed again from the boundary (the same computation one
  configuration on); or stuck further in, fed from the boundary one distinct remainder at a time;
* only tokens the mask allows are followed past a boundary.

That costs 0.2-30 ms, so its result is cached by exactly what it read, as masks are (``Touch``): the top
states down to the lowest cell the automaton read, and below them only the shortest-completion vectors of
the ``reach`` cells under that (``StackDistance.window``), relative to the first one's least entry. Every
distance is a min-plus expression of those vectors, so a configuration of another request, or deeper in a
recursion, with the same top and the same relative vectors has the same distances shifted by a constant:
a step that meets a known shape costs a walk of a few cells and one dictionary lookup. An entry keeps the
largest distance after any allowed token (the budget changes nothing while it fits) and the few tokens whose
distance exceeds the configuration's own (only they can ever be dropped while the invariant holds).
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from lightllm_struct.grammar.bitmask import pack_token_ids
from lightllm_struct.grammar.masks import rows_jit
from lightllm_struct.grammar.masks.lexeme_ends import LexemeEnds
from lightllm_struct.grammar.masks.rows_jit import row_values, row_values_numpy
from lightllm_struct.grammar.masks.token_ends import (ByteColumns, TokenEnds, allowed_rows, byte_columns,
                                                      token_ends)
from lightllm_struct.grammar.parsing.distance import INF
from lightllm_struct.grammar.parsing.dpda import Touch

__all__ = ["BudgetMasks", "ByteColumns", "TokenEnds", "byte_columns"]

_SCAN_BYTES = 32 << 20  # token scans kept per grammar (each about 2 bytes a vocabulary token: 340 at 49k)
_FULL = 32  # per-stack distance arrays of every allowed token kept (12 bytes a vocabulary token)
_ENTRY_UNITS = 1 << 23  # cached entries' size (tokens kept + mask words): about 64 MB, then start afresh
_MAX_SHAPES = 8
_ROWS = 32  # masks' allowed rows kept (8 bytes a token at most)
_MEMO = 1 << 12  # configurations remembered by identity (stack, lexer state, mask), then start afresh


class _Entry:
    """One configuration shape's distances, relative to its window's shift."""

    __slots__ = ("words", "base", "worst", "rows", "values", "peak", "hit_limit")

    def __init__(self, words, base, worst, rows, values, peak, hit_limit) -> None:
        self.words, self.base, self.worst = words, base, worst
        self.rows, self.values = rows, values  # the allowed rows whose distance exceeds ``base``, and it
        self.peak, self.hit_limit = peak, hit_limit


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
        self._max_depth = grammar.dpda.max_stack_depth
        self._lexeme = LexemeEnds(self.dist, self._tok)
        self._scans: OrderedDict = OrderedDict()
        self._scan_bytes = 0
        self._full: OrderedDict = OrderedDict()
        self._entries: dict = {}
        self._memo: dict = {}
        self._row_cache: OrderedDict = OrderedDict()
        self._units = 0
        self._shapes: dict[tuple, tuple] = {}
        self._lock = threading.Lock()

    def restrict(self, config, words: np.ndarray, left: int) -> np.ndarray:
        """``words`` (a packed mask, not written) without the tokens whose finish exceeds ``left - 1``.

        Returns ``words`` itself when nothing is dropped. EOS bits are kept: EOS ends a whole sentence.
        """
        entry, shift = self._entry(config, words)
        limit = left - 1 - shift  # in the entry's relative terms
        if entry.worst <= limit:
            return words
        tokens = byte_columns(self._tok).row_token
        if entry.base <= limit:  # the invariant holds: only tokens that lengthen the finish can be dropped
            out = words & ~pack_token_ids(tokens[entry.rows[entry.values > limit]], self._tok.num_words)
            if out.any():
                return out
        # Below the configuration's own distance (a budget under the shortest answer's bytes that long
        # tokens may still meet): the tokens that fit, else the closest, never an empty row.
        rows, values, _ = self.values(config, words)
        out = words & ~pack_token_ids(tokens[rows[values > left - 1]], self._tok.num_words)
        if not out.any():
            out = words & pack_token_ids(tokens[rows[values == values.min()]], self._tok.num_words)
        return out

    def values(self, config, words: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
        """The text tokens ``words`` allows (default: the configuration's mask), as ascending rows of
        :class:`ByteColumns`; the shortest finish after each (``INF`` where not followed); the largest."""
        if words is None:
            words = self.grammar.masker.mask(config)
        self._entry(config, words)  # the engine warms a new grammar's first step through here
        rows, values = self._full_values(config, words, Touch(config[0][1]))
        return rows, values, float(values.max()) if len(values) else 0.0

    # -- the cache by shape -----------------------------------------------------------------------
    def _shape(self, stack, depth: int, reach) -> tuple[tuple, tuple, float]:
        """The states of the top ``depth`` cells of ``stack``, and the completion window (and its shift) of the
        cell beneath them: the part of a cache key that the stack contributes."""
        states, cell = [], stack
        for _ in range(depth):
            if cell is None:
                break
            states.append(cell[0])
            cell = cell[2]
        window, shift = self.dist.stack.window(cell, reach)
        return tuple(states), window, shift

    def _entry(self, config, words: np.ndarray) -> tuple[_Entry, float]:
        """The entry of ``config``'s shape and its shift; by identity first: stacks are interned (equal stacks
        one object, ``CompiledGrammar._push``), so a configuration met before is one lookup, not a shape walk."""
        stack, lexer, q = config
        memo_key = (id(stack), lexer.uid, q, id(words))
        got = self._memo.get(memo_key)
        if got is not None and got[0] is stack and got[1] is words:  # kept alive by the memo: ids not reused
            return got[2], got[3]
        entry, shift = self._shaped_entry(config, words)
        if len(self._memo) >= _MEMO:
            self._memo = {}
        self._memo[memo_key] = (stack, words, entry, shift)
        return entry, shift

    def _shaped_entry(self, config, words: np.ndarray) -> tuple[_Entry, float]:
        stack, lexer, q = config
        base_key = (lexer.uid, q)
        height = stack[1]
        reach = self.dist.stack.reach
        for depth, exact in self._shapes.get(base_key, ()):
            states, window, shift = self._shape(stack, depth, reach)
            hit = self._entries.get((base_key, id(words), depth, height if exact else -1, states, window))
            if hit is not None and hit.words is words and height + hit.peak <= self._max_depth:
                return hit, shift
        touch = Touch(height)
        rows, values = self._full_values(config, words, touch)
        base = self._finish(config, touch)
        depth = height - touch.low + 1
        exact = touch.hit_limit or touch.low <= 0
        states, window, shift = self._shape(stack, depth, reach)
        high = values > base
        entry = _Entry(words, base - shift, (float(values.max()) if len(values) else 0.0) - shift,
                       rows[high].astype(np.int32), (values[high] - shift).astype(np.float32),
                       touch.peak - height, touch.hit_limit)
        key = (base_key, id(words), depth, height if exact else -1, states, window)
        with self._lock:
            shapes = self._shapes.get(base_key, ())
            if (depth, exact) not in shapes:
                if len(shapes) >= _MAX_SHAPES:
                    return entry, shift  # pathological shapes: computed, not kept
                self._shapes[base_key] = shapes + ((depth, exact),)  # replaced, never mutated
            units = len(entry.rows) + words.size
            if self._units + units > _ENTRY_UNITS:
                self._entries, self._units = {}, 0
            self._entries[key] = entry
            self._units += units
        return entry, shift

    # -- exact distances, recording what they read ------------------------------------------------
    def _finish(self, config, touch: Touch) -> float:
        """``FinishDistance.of`` under ``touch``."""
        if self.grammar.is_complete(config, touch):
            return 0.0
        stack, lexer, q = config
        if q == 0:
            return max(self.dist.stack.of(stack), 1.0)
        return max(self._in_lexeme(stack, lexer, q, touch), 1.0)

    def _in_lexeme(self, stack, lexer, q: int, touch: Touch, completions: dict | None = None) -> float:
        """The shortest finish from lexer state ``q`` on ``stack``. ``completions`` (terminal -> the stack's
        completion once it ends) is shared by the end states of one token scan: the same stack, and ``touch``
        only takes minima and maxima, so a second read of a terminal's completion would change nothing."""
        best = INF
        for length, term in self._lexeme.of(lexer, q):
            if length >= best:
                break
            value = None if completions is None else completions.get(term)
            if value is None:
                after = self.grammar.end_terminal(stack, term, touch)
                value = INF if after is None else self.dist.stack.of(after)
                if completions is not None:
                    completions[term] = value
            best = min(best, length + value)
        return best

    def _full_values(self, config, words: np.ndarray, touch: Touch) -> tuple[np.ndarray, np.ndarray]:
        """Rows and distances of every allowed text token, cached per stack object with what they read."""
        stack, lexer, q = config
        key = (id(stack), lexer.uid, q, id(words))
        hit = self._full.get(key)
        if hit is None or hit[0] is not stack or hit[1] is not words:
            rows = self._rows(words)
            inner = Touch(stack[1])
            values = self._compute(config, rows, inner)
            hit = (stack, words, rows, values, inner.low, inner.hit_limit, inner.peak)
            with self._lock:
                self._full[key] = hit
                while len(self._full) > _FULL:
                    self._full.popitem(last=False)
        touch.absorb(hit[4], hit[5], hit[6])
        return hit[2], hit[3]

    def _rows(self, words: np.ndarray) -> np.ndarray:
        """The allowed rows of a mask, kept for the last few masks: configurations of many stacks share one."""
        hit = self._row_cache.get(id(words))
        if hit is not None and hit[0] is words:  # the cache keeps ``words`` alive: its id is not reused
            return hit[1]
        rows = allowed_rows(byte_columns(self._tok), words, self._tok.vocab_size)
        with self._lock:
            self._row_cache[id(words)] = (words, rows)
            while len(self._row_cache) > _ROWS:
                self._row_cache.popitem(last=False)
        return rows

    def _row_values(self, code: np.ndarray, rows: np.ndarray, inner: np.ndarray):
        return row_values(code, rows, inner) if rows_jit.AVAILABLE else row_values_numpy(code, rows, inner)

    def _compute(self, config, rows: np.ndarray, touch: Touch) -> np.ndarray:
        stack, lexer, q = config
        ends = self._ends(lexer, q)
        completions: dict = {}
        inner = np.array([self._in_lexeme(stack, lexer, u, touch, completions) for u in ends.states.tolist()]
                         + [INF], dtype=np.float32)
        values, fresh, cross = self._row_values(ends.code, rows, inner)  # dead, fresh, crossing rows: INF for now
        if len(fresh):
            after = self.grammar.end_terminal(stack, lexer.accept_list[q], touch)
            if after is not None:
                sub = (after, self.grammar.lexer_for(after, touch), 0)
                sub_rows, sub_values = self._full_values(sub, self.grammar.masker.mask(sub), touch)
                at = np.minimum(np.searchsorted(sub_rows, rows[fresh]), max(len(sub_rows) - 1, 0))
                if len(sub_rows):
                    values[fresh] = np.where(sub_rows[at] == rows[fresh], sub_values[at], INF)
        if len(cross):
            at = np.searchsorted(ends.cross_rows, rows[cross])
            row_token = byte_columns(self._tok).row_token
            seen: dict = {}
            for i, row, col, term in zip(cross.tolist(), rows[cross].tolist(), ends.cross_cols[at].tolist(),
                                         ends.cross_terms[at].tolist()):
                data = self._tok.vocab[int(row_token[row])][col:]
                value = seen.get((term, data))
                if value is None:
                    value = seen[(term, data)] = self._remainder(stack, term, data, touch)
                values[i] = value
        return values

    def _remainder(self, stack, term: int, data: bytes, touch: Touch) -> float:
        """The finish after ending ``term`` on ``stack`` and then feeding ``data``."""
        after = self.grammar.end_terminal(stack, term, touch)
        if after is None:
            return INF
        fed = self.grammar._feed((after, self.grammar.lexer_for(after, touch), 0), data, touch)
        return INF if fed is None else self._finish(fed, touch)

    def _ends(self, lexer, q: int) -> TokenEnds:
        key = (lexer.uid, q)
        got = self._scans.get(key)
        if got is None:
            got = token_ends(byte_columns(self._tok), lexer, q)
            with self._lock:
                if key in self._scans:  # another thread scanned it meanwhile: count it once
                    return self._scans[key]
                self._scans[key] = got
                self._scan_bytes += got.nbytes
                while self._scan_bytes > _SCAN_BYTES and len(self._scans) > 1:
                    self._scan_bytes -= self._scans.popitem(last=False)[1].nbytes
        return got

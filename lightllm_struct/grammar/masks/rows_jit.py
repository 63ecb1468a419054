"""The budget check's per-configuration passes over the allowed tokens, compiled.

Each configuration a walk meets for the first time reads the rows (``token_ends.ByteColumns``) of the tokens its
mask allows, and their distances from the lexer state's token ends; in numpy that is a bit unpacking, a sort
and five whole-array passes (0.3-1.2 ms at 128k tokens, where a string allows nearly all of them). Each is one
pass here. Without numba ``token_ends`` and ``budget`` use the numpy forms.
"""
from __future__ import annotations

import numpy as np

from lightllm_struct.grammar.masks.scan_jit import AVAILABLE, njit

_FRESH, _CROSS = -2, -3  # token_ends' codes (that module imports this one)


def _allowed_rows(words, row_token, row_of_token):  # pragma: no cover - compiled by numba
    """The ascending rows whose token's bit the packed int32 mask ``words`` sets.

    A mask with few set words (a number, a key, punctuation) is read bit by bit and its few rows sorted; a
    wide one (inside a string) by one pass over the rows, each reading its token's bit.
    """
    vocab_size = row_of_token.shape[0]
    busy = 0
    for w in range(words.shape[0]):
        if words[w] != 0:
            busy += 1
    n = row_token.shape[0]
    if 8 * busy > words.shape[0]:
        out = np.empty(n, np.int64)
        k = 0
        for r in range(n):
            t = row_token[r]
            if (np.uint32(words[t >> 5]) >> np.uint32(t & 31)) & np.uint32(1):
                out[k] = r
                k += 1
        return out[:k].copy()
    out = np.empty(32 * busy, np.int64)
    k = 0
    for w in range(words.shape[0]):
        x = np.uint32(words[w])
        if x == 0:
            continue
        for b in range(32):
            if (x >> np.uint32(b)) & np.uint32(1):
                t = w * 32 + b
                if t < vocab_size and row_of_token[t] >= 0:
                    out[k] = row_of_token[t]
                    k += 1
    return np.sort(out[:k])


def _row_values(code, rows, inner):  # pragma: no cover - compiled by numba
    """Per row of ``rows``: ``inner[code]`` inside the lexeme, else ``inner``'s last entry (INF); and the
    positions (into ``rows``) of the FRESH and of the CROSS rows, ascending."""
    n = rows.shape[0]
    values = np.empty(n, np.float32)
    fresh = np.empty(n, np.int64)
    cross = np.empty(n, np.int64)
    last = inner[inner.shape[0] - 1]
    n_fresh = 0
    n_cross = 0
    for i in range(n):
        c = code[rows[i]]
        if c >= 0:
            values[i] = inner[c]
            continue
        values[i] = last
        if c == _FRESH:
            fresh[n_fresh] = i
            n_fresh += 1
        elif c == _CROSS:
            cross[n_cross] = i
            n_cross += 1
    return values, fresh[:n_fresh].copy(), cross[:n_cross].copy()


if AVAILABLE:
    _allowed_rows = njit(nogil=True, cache=True)(_allowed_rows)
    _row_values = njit(nogil=True, cache=True)(_row_values)


def allowed_rows(words: np.ndarray, row_token: np.ndarray, row_of_token: np.ndarray) -> np.ndarray:
    """The ascending rows (``row_token``'s order; ``row_of_token`` its inverse, -1 off the rows) of the text
    tokens the packed mask ``words`` allows."""
    return _allowed_rows(words, row_token, row_of_token)


def row_values(code: np.ndarray, rows: np.ndarray, inner: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(values, fresh, cross)``: see ``_row_values``; ``code`` int16 or int32, ``inner`` float32."""
    return _row_values(code, rows, inner)


def row_values_numpy(code: np.ndarray, rows: np.ndarray, inner: np.ndarray):
    """``row_values`` in numpy (the reference, and the path without numba)."""
    code = code[rows]
    values = inner[np.where(code >= 0, code, len(inner) - 1)]
    return values, np.flatnonzero(code == _FRESH), np.flatnonzero(code == _CROSS)


def warm_up() -> None:
    """Load (or compile) the passes now, with the real argument types, not inside a timed mask."""
    if AVAILABLE:
        for word in (0, -1):  # the sparse and the dense reading
            allowed_rows(np.full(1, word, np.int32), np.zeros(1, np.int64), np.zeros(1, np.int64))
        for dtype in (np.int16, np.int32):
            row_values(np.zeros(1, dtype), np.zeros(1, np.int64), np.zeros(1, np.float32))

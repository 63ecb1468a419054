"""Matrix scan: the lexer runs over all tokens at once, one numpy step per byte column.

Tokens are the rows of a padded byte matrix sorted by length, so the tokens that have ended form a
prefix of the active rows and leave by slicing. The alternative to the token trie (``scan_trie.py``);
the benchmark can select either.
"""
from __future__ import annotations

import numpy as np

from lightllm_struct.grammar.bitmask import pack_token_ids


class TokenMatrix:
    """Text tokens as a column-major byte matrix, rows sorted by byte length."""

    def __init__(self, vocab: list[bytes], text_ids: list[int]) -> None:
        ids = sorted(text_ids, key=lambda i: len(vocab[i]))
        self.row_token = np.array(ids, dtype=np.int64)
        self.row_len = np.array([len(vocab[i]) for i in ids], dtype=np.int64)
        width = int(self.row_len.max()) if ids else 1
        rows = np.zeros((len(ids), width), dtype=np.uint8)
        for row, i in enumerate(ids):
            rows[row, :len(vocab[i])] = np.frombuffer(vocab[i], dtype=np.uint8)
        self.columns = np.ascontiguousarray(rows.T).astype(np.int64)  # [width, rows]: gathers stay in one row
        self.all_rows = np.arange(len(ids), dtype=np.int64)

    def words(self, rows: np.ndarray, num_words: int) -> np.ndarray:
        return pack_token_ids(self.row_token[rows], num_words)


def matrix_scan(matrix: TokenMatrix, lexer, rows: np.ndarray, offset: int, state: int):
    """Run ``lexer`` from ``state`` over ``rows`` (ascending) from byte ``offset``.

    Returns
    -------
    (allowed rows, [(terminal, (column, stuck rows))])
    """
    table = lexer.table.reshape(-1)
    accept = lexer.accept
    cur = rows
    cur_len = matrix.row_len[cur]
    states = np.full(len(cur), state, dtype=np.int64)
    allowed: list[np.ndarray] = []
    groups: list[tuple[int, tuple[int, np.ndarray]]] = []
    col = offset
    while len(cur):
        done = int(np.searchsorted(cur_len, col, side="right"))  # rows are sorted by length
        if done:
            allowed.append(cur[:done])
            cur, cur_len, states = cur[done:], cur_len[done:], states[done:]
            if not len(cur):
                break
        nxt = table[(states << 8) | matrix.columns[col][cur]].astype(np.int64)  # the table may be int16
        if nxt.min() < 0:
            ok = nxt >= 0
            stuck = ~ok
            terms = accept[states[stuck]]
            stuck_rows = cur[stuck]
            for term in np.unique(terms[terms >= 0]).tolist():
                groups.append((term, (col, stuck_rows[terms == term])))
            cur, cur_len, nxt = cur[ok], cur_len[ok], nxt[ok]
        states = nxt
        col += 1
    return (np.concatenate(allowed) if allowed else np.zeros(0, dtype=np.int64)), groups

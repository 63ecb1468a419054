"""The reachable product of several byte DFAs, compiled with numba.

A product state is the tuple of its components' states; it is found again through an open-addressing hash
table keyed by a 62-bit hash of the tuple, a hit confirmed by comparing the tuple itself (so any number of
components works: a state of dozens of key, enum and value terminals too). In numpy every product state
cost a dozen array operations (tens of microseconds: a lexer holding a 700-state key DFA took 10 ms to
build; a Kubernetes schema's 40-terminal state 1.7 s); compiled, a state is 256 x (components) table
reads. Without numba ``lexer.build_union`` keeps its numpy construction.
"""
from __future__ import annotations

import numpy as np

from lightllm_struct.grammar.lexing.jit_hash import EMPTY, rehashed

try:
    from numba import njit
except ImportError:  # pragma: no cover - numba is a dependency; the numpy product covers its absence
    njit = None

AVAILABLE = njit is not None


def _product(tables, offsets, max_states):  # pragma: no cover - compiled by numba
    """(rows [n, 256], components [n, k]) of the reachable product; n = -1 past ``max_states``."""
    k = offsets.shape[0]
    cap = 64
    comps = np.empty((cap, k), np.int32)
    rows = np.empty((cap, 256), np.int32)
    hcap = 256
    hkeys = np.full(hcap, EMPTY, np.int64)
    hvals = np.empty(hcap, np.int32)
    cur = np.empty(k, np.int32)
    for i in range(k):
        comps[0, i] = 0
    n = 1  # the fresh start is not in the hash: a transition back to all-zero makes a state of its own
    done = 0
    while done < n:
        for b in range(256):
            key = np.int64(0)
            alive = False
            for i in range(k):
                s = comps[done, i]
                t = -1 if s < 0 else tables[offsets[i] + s * 256 + b]
                cur[i] = t
                key = (key * np.int64(1000003) + np.int64(t + 2)) & np.int64(0x3FFFFFFFFFFFFFFF)
                if t >= 0:
                    alive = True
            if not alive:
                rows[done, b] = -1
                continue
            slot = key & (hcap - 1)
            found = -1
            while hkeys[slot] != EMPTY:
                if hkeys[slot] == key:
                    j = hvals[slot]
                    same = True
                    for i in range(k):
                        if comps[j, i] != cur[i]:
                            same = False
                            break
                    if same:
                        found = j
                        break
                slot = (slot + 1) & (hcap - 1)
            if found >= 0:
                rows[done, b] = found
                continue
            if n >= max_states:
                return rows[:0], comps[:0], -1
            if n == cap:  # grow the state arrays
                cap *= 2
                grown = np.empty((cap, k), np.int32)
                grown[:n] = comps[:n]
                comps = grown
                grown_rows = np.empty((cap, 256), np.int32)
                grown_rows[:n] = rows[:n]
                rows = grown_rows
            comps[n] = cur
            hkeys[slot] = key
            hvals[slot] = n
            rows[done, b] = n
            n += 1
            if 2 * n > hcap:  # keep the hash at most half full
                hkeys, hvals = rehashed(hkeys, hvals)
                hcap = hkeys.shape[0]
        done += 1
    return rows[:n], comps[:n], n


if AVAILABLE:
    _product = njit(nogil=True, cache=True)(_product)


def product(tables: list[np.ndarray], *, max_states: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(table [n, 256], component states [n, k]) of the reachable product from all-zero, in breadth-first
    order; state 0 is the fresh start, never re-entered. None when this path cannot build it (the caller's
    numpy path can); ``(None, None)`` past ``max_states`` states."""
    if not AVAILABLE:
        return None
    offsets = np.cumsum([0] + [t.shape[0] * 256 for t in tables[:-1]]).astype(np.int64)
    flat = np.concatenate([np.ascontiguousarray(t, dtype=np.int32).reshape(-1) for t in tables])
    rows, comps, n = _product(flat, offsets, max_states)
    if n < 0:
        return None, None
    return rows, comps

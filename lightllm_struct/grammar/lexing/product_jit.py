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


def _product(tables, offsets, starts, max_states):  # pragma: no cover - compiled by numba
    """(rows [n, 256], components [n, k]) of the reachable product; n = -1 past ``max_states``.

    A state where one component alone is alive (most of a lexer: past the first byte that leaves every key
    literal, only the "any other key" DFA is) is that component's state: it is found through ``single``
    (``starts[i]`` + component state -> product state) and its row is that component's row renamed, without
    the tuple, the hash or the other components. The automaton, numbering included, is the one the tuple
    path alone makes.
    """
    k = offsets.shape[0]
    cap = 64
    comps = np.empty((cap, k), np.int32)
    rows = np.empty((cap, 256), np.int32)
    lone = np.empty(cap, np.int32)  # the alive component of a lone state, else -1
    single = np.full(tables.shape[0] // 256, -1, np.int32)
    hcap = 256
    hkeys = np.full(hcap, EMPTY, np.int64)
    hvals = np.empty(hcap, np.int32)
    cur = np.empty(k, np.int32)
    bases = np.empty(k, np.int64)  # this state's row of each component in ``tables`` (-1: dead)
    for i in range(k):
        comps[0, i] = 0
    lone[0] = -1  # the fresh start is in neither map: a transition back to it makes a state of its own
    n = 1
    done = 0
    while done < n:
        if lone[done] >= 0:
            i = lone[done]
            base = offsets[i] + comps[done, i] * 256
            first = starts[i]  # hoisted: read in the loop, it made this path 3x slower
            for b in range(256):
                t = tables[base + b]
                if t < 0:
                    rows[done, b] = -1
                    continue
                j = single[first + t]
                if j < 0:
                    if n >= max_states:
                        return rows[:0], comps[:0], -1
                    if n == cap:
                        comps, rows, lone, cap = _grown(comps, rows, lone, n, cap)
                    for m in range(k):
                        comps[n, m] = -1
                    comps[n, i] = t
                    lone[n] = i
                    single[first + t] = n
                    j = n
                    n += 1
                rows[done, b] = j
            done += 1
            continue
        for i in range(k):
            s = comps[done, i]
            bases[i] = -1 if s < 0 else offsets[i] + s * 256
        for b in range(256):
            key = np.int64(0)
            alive = 0
            last = -1
            for i in range(k):
                t = -1 if bases[i] < 0 else tables[bases[i] + b]
                cur[i] = t
                key = (key * np.int64(1000003) + np.int64(t + 2)) & np.int64(0x3FFFFFFFFFFFFFFF)
                if t >= 0:
                    alive += 1
                    last = i
            if alive == 0:
                rows[done, b] = -1
                continue
            if alive == 1:
                found = single[starts[last] + cur[last]]
            else:
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
            if n == cap:
                comps, rows, lone, cap = _grown(comps, rows, lone, n, cap)
            comps[n] = cur
            rows[done, b] = n
            if alive == 1:
                lone[n] = last
                single[starts[last] + cur[last]] = n
                n += 1
                continue
            lone[n] = -1
            hkeys[slot] = key
            hvals[slot] = n
            n += 1
            if 2 * n > hcap:  # keep the hash at most half full
                hkeys, hvals = rehashed(hkeys, hvals)
                hcap = hkeys.shape[0]
        done += 1
    return rows[:n], comps[:n], n


def _grown(comps, rows, lone, n, cap):  # pragma: no cover - compiled by numba
    """The state arrays at twice their capacity."""
    cap *= 2
    grown = np.empty((cap, comps.shape[1]), np.int32)
    grown[:n] = comps[:n]
    grown_rows = np.empty((cap, 256), np.int32)
    grown_rows[:n] = rows[:n]
    grown_lone = np.empty(cap, np.int32)
    grown_lone[:n] = lone[:n]
    return grown, grown_rows, grown_lone, cap


if AVAILABLE:
    _grown = njit(nogil=True, cache=True)(_grown)
    _product = njit(nogil=True, cache=True)(_product)


def product(tables: list[np.ndarray], *, max_states: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(table [n, 256], component states [n, k]) of the reachable product from all-zero, in breadth-first
    order; state 0 is the fresh start, never re-entered. None when this path cannot build it (the caller's
    numpy path can); ``(None, None)`` past ``max_states`` states."""
    if not AVAILABLE:
        return None
    offsets = np.cumsum([0] + [t.shape[0] * 256 for t in tables[:-1]]).astype(np.int64)
    flat = np.concatenate([np.ascontiguousarray(t, dtype=np.int32).reshape(-1) for t in tables])
    starts = (offsets // 256).astype(np.int64)
    rows, comps, n = _product(flat, offsets, starts, max_states)
    if n < 0:
        return None, None
    return rows, comps

"""Subset construction (byte NFA -> DFA) compiled with numba.

In Python a DFA state cost tens of microseconds of set and dict work per NFA node it holds: an object's
"any other key" regex (a JSON string that is none of the declared keys, 5-80 KB of regex) took 30-800 ms
to determinise, the largest single cost of a typical schema's compile. Here the NFA is in CSR arrays, a
DFA state is the sorted list of the *important* NFA nodes of its closure (those with byte edges, and the
final node: the others only lead to these, so two closures with the same important nodes are the same
state), bytes are grouped into the classes no edge boundary separates, and states are found again
through an open-addressing hash of their node lists, a hit confirmed by comparing the lists.

The construction runs in slices of ``_SLICE`` DFA states so the caller checks the compile deadline between
them; the state limit bounds the whole. Without numba, ``regex_dfa`` keeps its Python construction.
"""
from __future__ import annotations

from itertools import chain

import numpy as np

from lightllm_struct.grammar.deadline import Deadline
from lightllm_struct.grammar.errors import GrammarTooComplex
from lightllm_struct.grammar.lexing.jit_hash import EMPTY, rehashed

try:
    from numba import njit
except ImportError:  # pragma: no cover - numba is a dependency; regex_dfa's Python path covers its absence
    njit = None

AVAILABLE = njit is not None
_SLICE = 512  # DFA states made between two deadline checks


def _grow(a, need):  # pragma: no cover - compiled by numba
    if need <= a.shape[0]:
        return a
    cap = a.shape[0] * 2
    while cap < need:
        cap *= 2
    out = np.empty(cap, a.dtype)
    out[:a.shape[0]] = a
    return out


def _grow_rows(a, need):  # pragma: no cover - compiled by numba
    if need <= a.shape[0]:
        return a
    out = np.empty((a.shape[0] * 2, a.shape[1]), a.dtype)
    out[:a.shape[0]] = a
    return out


def _hash(members):  # pragma: no cover - compiled by numba
    key = np.int64(members.shape[0] + 1)
    for k in range(members.shape[0]):
        key = (key * np.int64(1000003) + np.int64(members[k])) & np.int64(0x3FFFFFFFFFFFFFFF)
    return key


def _step(eps_ptr, eps_dst, edge_ptr, edge_cls_lo, edge_cls_hi, edge_dst, important, final, n_cls,
          pool, pool_ptr, rows, acc, hkeys, hvals, n, done, stop, max_states):  # pragma: no cover - numba
    """Make DFA states ``done .. stop-1`` (discovering new ones); returns the grown arrays and counters.

    n = -1 in the result: past ``max_states``.
    """
    n_nodes = eps_ptr.shape[0] - 1
    stamp = np.zeros(n_nodes, np.int32)
    mark = 0
    stack = np.empty(n_nodes, np.int32)
    got = np.empty(n_nodes, np.int32)
    count = np.zeros(n_cls + 1, np.int64)
    targets = np.empty(16, np.int32)
    dest = np.empty(n_cls, np.int32)
    while done < n and done < stop:
        lo_m, hi_m = pool_ptr[done], pool_ptr[done + 1]
        # counting sort of the edge targets by byte class
        for c in range(n_cls + 1):
            count[c] = 0
        total = 0
        for j in range(lo_m, hi_m):
            node = pool[j]
            for e in range(edge_ptr[node], edge_ptr[node + 1]):
                for c in range(edge_cls_lo[e], edge_cls_hi[e] + 1):
                    count[c + 1] += 1
                    total += 1
        for c in range(n_cls):
            count[c + 1] += count[c]
        targets = _grow(targets, total)
        fill = count[:n_cls].copy()
        for j in range(lo_m, hi_m):
            node = pool[j]
            for e in range(edge_ptr[node], edge_ptr[node + 1]):
                for c in range(edge_cls_lo[e], edge_cls_hi[e] + 1):
                    targets[fill[c]] = edge_dst[e]
                    fill[c] += 1
        for c in range(n_cls):
            if count[c] == count[c + 1]:
                dest[c] = -1
                continue
            if c > 0 and count[c + 1] - count[c] == count[c] - count[c - 1]:
                # neighbouring classes under the same edges list the same targets: one closure
                same = True
                width = count[c] - count[c - 1]
                for t in range(width):
                    if targets[count[c] + t] != targets[count[c - 1] + t]:
                        same = False
                        break
                if same:
                    dest[c] = dest[c - 1]
                    continue
            # epsilon closure of the class's targets, keeping the important nodes
            mark += 1
            top = 0
            for t in range(count[c], count[c + 1]):
                v = targets[t]
                if stamp[v] != mark:
                    stamp[v] = mark
                    stack[top] = v
                    top += 1
            size, is_final = _close(eps_ptr, eps_dst, important, final, stack, top, stamp, mark, got)
            members = np.sort(got[:size])
            key = _hash(members)
            hcap = hkeys.shape[0]
            slot = key & (hcap - 1)
            found = -1
            while hkeys[slot] != EMPTY:
                if hkeys[slot] == key:
                    s = hvals[slot]
                    a = pool_ptr[s]
                    if pool_ptr[s + 1] - a == size:
                        same = True
                        for k in range(size):
                            if pool[a + k] != members[k]:
                                same = False
                                break
                        if same:
                            found = s
                            break
                slot = (slot + 1) & (hcap - 1)
            if found < 0:
                if n >= max_states:
                    return pool, pool_ptr, rows, acc, hkeys, hvals, -1, done
                found = n
                start = pool_ptr[n]
                pool = _grow(pool, start + size)
                pool[start:start + size] = members
                pool_ptr = _grow(pool_ptr, n + 2)
                pool_ptr[n + 1] = start + size
                rows = _grow_rows(rows, n + 1)
                acc = _grow(acc, n + 1)
                acc[n] = is_final
                hkeys[slot] = key
                hvals[slot] = n
                n += 1
                if 2 * n > hcap:  # rehash at half full
                    hkeys, hvals = rehashed(hkeys, hvals)
                    hcap = hkeys.shape[0]
            dest[c] = found
        for c in range(n_cls):
            rows[done, c] = dest[c]
        done += 1
    return pool, pool_ptr, rows, acc, hkeys, hvals, n, done


def _close(eps_ptr, eps_dst, important, final, stack, top, stamp, mark, got):  # pragma: no cover - numba
    """Epsilon-close the ``top`` nodes on ``stack`` (already stamped ``mark``): the important nodes reached go
    to ``got``; returns (how many, whether the final node was reached)."""
    size, is_final = 0, False
    while top > 0:
        top -= 1
        v = stack[top]
        if important[v]:
            got[size] = v
            size += 1
        if v == final:
            is_final = True
        for k in range(eps_ptr[v], eps_ptr[v + 1]):
            w = eps_dst[k]
            if stamp[w] != mark:
                stamp[w] = mark
                stack[top] = w
                top += 1
    return size, is_final


def _closure0(eps_ptr, eps_dst, important, final, start):  # pragma: no cover - compiled by numba
    n_nodes = eps_ptr.shape[0] - 1
    stamp = np.zeros(n_nodes, np.int32)
    stack = np.empty(n_nodes, np.int32)
    got = np.empty(n_nodes, np.int32)
    stamp[start] = 1
    stack[0] = start
    size, is_final = _close(eps_ptr, eps_dst, important, final, stack, 1, stamp, 1, got)
    return np.sort(got[:size]), is_final

if AVAILABLE:
    _grow = njit(nogil=True, cache=True)(_grow)
    _grow_rows = njit(nogil=True, cache=True)(_grow_rows)
    _hash = njit(nogil=True, cache=True)(_hash)
    _close = njit(nogil=True, cache=True)(_close)
    _step = njit(nogil=True, cache=True)(_step)
    _closure0 = njit(nogil=True, cache=True)(_closure0)


def determinize(nfa, start: int, final: int, max_states: int, deadline: Deadline) -> tuple[np.ndarray, np.ndarray]:
    """(table [n, 256], accepting [n]) of the subset DFA of a non-virtual ``ByteNFA``, state 0 initial.

    Raises
    ------
    GrammarTooComplex
        More than ``max_states`` DFA states.
    CompileTimeout
        ``deadline`` passed (checked between slices of states).
    """
    n_nodes = len(nfa.edges)
    eps_len = np.fromiter((len(x) for x in nfa.eps), np.int64, n_nodes)
    edge_len = np.fromiter((len(x) for x in nfa.edges), np.int64, n_nodes)
    eps_ptr = np.zeros(n_nodes + 1, np.int64)
    np.cumsum(eps_len, out=eps_ptr[1:])
    edge_ptr = np.zeros(n_nodes + 1, np.int64)
    np.cumsum(edge_len, out=edge_ptr[1:])
    eps_dst = np.fromiter(chain.from_iterable(nfa.eps), np.int32, int(eps_ptr[-1]))
    flat = np.array(list(chain.from_iterable(nfa.edges)), dtype=np.int32).reshape(-1, 3)
    # byte classes: maximal byte ranges that no edge's start or end splits
    cuts = np.zeros(257, bool)
    cuts[0] = True
    cuts[flat[:, 0]] = True
    cuts[flat[:, 1] + 1] = True
    cls_of_byte = np.cumsum(cuts[:256]).astype(np.int32) - 1
    n_cls = int(cls_of_byte[-1]) + 1
    edge_cls_lo = cls_of_byte[flat[:, 0]].astype(np.int32)
    edge_cls_hi = cls_of_byte[flat[:, 1]].astype(np.int32)
    edge_dst = np.ascontiguousarray(flat[:, 2])
    important = edge_len > 0
    important[final] = True
    first, first_final = _closure0(eps_ptr, eps_dst, important, final, start)
    pool = np.empty(max(4 * len(first), 64), np.int32)
    pool[:len(first)] = first
    pool_ptr = np.zeros(64, np.int64)
    pool_ptr[1] = len(first)
    rows = np.empty((64, n_cls), np.int32)
    acc = np.zeros(64, np.bool_)
    acc[0] = first_final
    hkeys = np.full(256, EMPTY, np.int64)  # the initial state is looked up like any other
    hvals = np.empty(256, np.int32)
    key = _hash(first)
    hkeys[int(key) & 255] = key
    hvals[int(key) & 255] = 0
    n, done = 1, 0
    while done < n:
        deadline.check()
        pool, pool_ptr, rows, acc, hkeys, hvals, n, done = _step(
            eps_ptr, eps_dst, edge_ptr, edge_cls_lo, edge_cls_hi, edge_dst, important, final, n_cls,
            pool, pool_ptr, rows, acc, hkeys, hvals, n, done, done + _SLICE, max_states)
        if n < 0:
            raise GrammarTooComplex(f"regex DFA exceeds {max_states} states")
    return np.ascontiguousarray(rows[:n][:, cls_of_byte]), acc[:n].copy()

"""The open-addressing hash the numba state builders share (``product_jit``, ``subset_jit``).

Keys are non-negative int64 hashes of a state's contents (``EMPTY`` marks a free slot), values the state's
number; the table's size is a power of two and it is kept at most half full, so linear probing stays short.
"""
from __future__ import annotations

import numpy as np

try:
    from numba import njit
except ImportError:  # pragma: no cover - numba is a dependency; the callers' Python paths cover its absence
    njit = None

EMPTY = -1


def rehashed(hkeys, hvals):  # pragma: no cover - compiled by numba
    """The table rehashed into twice its size (the caller grows it once it is half full)."""
    hcap = hkeys.shape[0] * 2
    nkeys = np.full(hcap, EMPTY, np.int64)
    nvals = np.empty(hcap, np.int32)
    for j in range(hkeys.shape[0]):
        if hkeys[j] != EMPTY:
            s2 = hkeys[j] & (hcap - 1)
            while nkeys[s2] != EMPTY:
                s2 = (s2 + 1) & (hcap - 1)
            nkeys[s2] = hkeys[j]
            nvals[s2] = hvals[j]
    return nkeys, nvals


if njit is not None:
    rehashed = njit(nogil=True, cache=True)(rehashed)

"""What a byte-bounded cache of compiled grammars needs: their users, their sizes, and memory given back.

A cached grammar that a running request still walks must stay (evicting it frees nothing, and the next
request with that constraint would compile it again): its users are the matchers made from it, held weakly,
so a request that ends stops counting without any hook. Once a large grammar is evicted, its memory is only
reclaimed by the cyclic collector (a grammar and its mask caches refer to each other), and glibc keeps freed
small blocks in the process unless asked: ``release_memory`` trims the heap once an evicted grammar is freed
(a 250-parameter tool's grammar deleted: 545 -> 460 MB RSS after ``malloc_trim(0)``, ``benchmarks/RESULTS.md``).
"""
from __future__ import annotations

import concurrent.futures as cf
import ctypes
import ctypes.util
import gc
import logging
import threading
import weakref
from typing import Any

logger = logging.getLogger(__name__)

# Evictions smaller than this leave the collector and the allocator to their own pace (a full collection
# costs tens of milliseconds in a process holding a vocabulary's tables).
RELEASE_MIN_BYTES = 16 << 20


class GrammarUsers:
    """The live users (matchers, trackers) of each compiled grammar, weakly held (thread-safe).

    Keyed by the grammar's id: a live user keeps its grammar alive, so an id with live users is never
    reused; an id whose users are all gone is dropped when next counted.
    """

    def __init__(self) -> None:
        self._users: dict[int, weakref.WeakSet] = {}
        self._lock = threading.Lock()

    def add(self, grammar: Any, user: Any) -> None:
        """Count ``user`` as using ``grammar`` while it lives (a user that cannot be weakly held is not counted)."""
        with self._lock:
            try:
                self._users.setdefault(id(grammar), weakref.WeakSet()).add(user)
            except TypeError:
                pass

    def count(self, grammar: Any) -> int:
        with self._lock:
            users = self._users.get(id(grammar))
            n = 0 if users is None else len(users)
            if users is not None and n == 0:
                del self._users[id(grammar)]
            return n

    def in_use(self, future: cf.Future) -> bool:
        """Whether a cached compile must stay: still running, or its grammar has a live user."""
        if not future.done():
            return True
        if future.cancelled() or future.exception() is not None:
            return False
        return self.count(future.result()) > 0


def future_nbytes(future: cf.Future) -> int:
    """The estimated bytes of a cached compile: its grammar's ``nbytes()`` once done, else 0."""
    if not future.done() or future.cancelled() or future.exception() is not None:
        return 0
    nbytes = getattr(future.result(), "nbytes", None)
    return int(nbytes()) if callable(nbytes) else 0


def _malloc_trim() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        return libc.malloc_trim  # glibc only: musl and macOS have none
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()
_TRIM_DELAY_S = 0.5  # a finalizer runs before the objects it watched are freed: trim a little after


def release_memory(futures: list, nbytes: int) -> bool:
    """After ``futures`` (cached compiles, ``nbytes`` estimated) were evicted: once each grammar is freed,
    return free heap pages to the system (glibc's ``malloc_trim``), if that is large enough to matter.

    An evicted grammar may still be referenced (a request that holds it, the future a coroutine awaits),
    and a grammar is freed only by the cyclic collector (it and its mask caches refer to each other): so the
    trim waits for the grammar's finalizer, and a collection now frees those that nothing holds any more.
    Returns whether anything was scheduled.
    """
    if nbytes < RELEASE_MIN_BYTES:
        return False
    for future in futures:
        if future.done() and not future.cancelled() and future.exception() is None:
            try:
                weakref.finalize(future.result(), _trim_soon)
            except TypeError:  # not weakly referable: nothing to wait for
                pass
    futures.clear()
    threading.Thread(target=_collect, name="llms-release", daemon=True).start()
    return True


def _collect() -> None:
    gc.collect()  # out of the evicting caller's frame, which still held the values


def _trim_soon() -> None:
    timer = threading.Timer(_TRIM_DELAY_S, _trim)
    timer.daemon = True
    timer.start()


def _trim() -> None:
    if _TRIM is not None:
        _TRIM(0)
    logger.debug("returned free heap to the system after evicting grammars")

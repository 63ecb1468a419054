"""One bounded, thread-safe least-recently-used map for the caches of the grammar engine and its users.

Every cache that user input can fill (schemas, literals, terminals) must be bounded: a long-running server
sees an unbounded stream of distinct ones. Entries of very different sizes (a compiled grammar is a few
hundred KB for a small schema, about 100 MB for a tool of 250 parameters) need a bound in bytes as well as
in entries: ``max_bytes`` with a ``size_of`` estimate, re-measured by :meth:`LRU.refresh` for values that
grow (a grammar's mask cache fills as requests use it). Entries a caller still uses (``in_use``) are never
evicted, even over the bound: evicting them would free nothing, and the next request would compile again.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
_MISSING = object()


class LRU(Generic[K, V]):
    """A map of at most ``maxsize`` entries (and ``max_bytes``) that forgets the least recently used first.

    Parameters
    ----------
    maxsize:
        Most entries kept (>= 1).
    max_bytes:
        Most bytes kept by ``size_of``'s estimate (None: no byte bound).
    size_of:
        The estimated bytes of a value (None: 0); called on insertion and by :meth:`refresh`, outside the
        lock, so it may be slow-ish but must not use this cache.
    in_use:
        Whether a value must stay (None: never); such entries are skipped by eviction.
    on_evict:
        Called as ``on_evict(values, nbytes)`` after entries were evicted (their values and estimated bytes),
        once this cache dropped them and released its lock (to give memory back once they are freed:
        ``engine/grammar_users.release_memory``).

    Raises
    ------
    ValueError
        For ``maxsize < 1`` or ``max_bytes < 1``.
    """

    def __init__(self, maxsize: int, *, max_bytes: int | None = None, size_of: Callable[[V], int] | None = None,
                 in_use: Callable[[V], bool] | None = None,
                 on_evict: Callable[[list[V], int], None] | None = None) -> None:
        if maxsize < 1:
            raise ValueError(f"LRU maxsize must be >= 1, got {maxsize}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"LRU max_bytes must be >= 1, got {max_bytes}")
        self.maxsize, self.max_bytes = maxsize, max_bytes
        self._size_of, self._in_use, self._on_evict = size_of, in_use, on_evict
        self._data: OrderedDict[K, V] = OrderedDict()
        self._sizes: dict[K, int] = {}
        self._nbytes = 0
        self.evictions = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: K) -> bool:
        return key in self._data

    @property
    def nbytes(self) -> int:
        """The estimated bytes of the entries (as last measured)."""
        return self._nbytes

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value of ``key`` (now the most recently used), or ``default``."""
        with self._lock:
            value = self._data.get(key, _MISSING)
            if value is _MISSING:
                return default
            self._data.move_to_end(key)
            return value  # type: ignore[return-value]

    def put(self, key: K, value: V) -> None:
        """Set ``key`` to ``value`` (the most recently used), forgetting the oldest entries beyond the bounds."""
        size = self._measure(value)
        with self._lock:
            self._store(key, value, size)
            evicted = self._evict()
        self._report(evicted)

    def setdefault(self, key: K, make: Callable[[], V]) -> V:
        """The value of ``key``; if absent, ``make()`` is stored and returned (under the lock: keep it cheap)."""
        with self._lock:
            value = self._data.get(key, _MISSING)
            if value is not _MISSING:
                self._data.move_to_end(key)
                return value  # type: ignore[return-value]
            value = make()
            self._store(key, value, self._measure(value))
            evicted = self._evict()
        self._report(evicted)
        return value

    def pop(self, key: K) -> V | None:
        """Forget ``key``; its value, or None."""
        with self._lock:
            self._nbytes -= self._sizes.pop(key, 0)
            return self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._sizes.clear()
            self._nbytes = 0

    def refresh(self, *keys: K) -> int:
        """Measure ``keys`` again (all entries if none: values that grow) and evict beyond the bounds; the
        bytes evicted."""
        with self._lock:
            items = [(k, self._data[k]) for k in keys if k in self._data] if keys else list(self._data.items())
        sizes = {key: self._measure(value) for key, value in items}
        with self._lock:
            for key, size in sizes.items():
                if key in self._sizes:
                    self._nbytes += size - self._sizes[key]
                    self._sizes[key] = size
            evicted = self._evict()
        return self._report(evicted)

    def sizes(self) -> dict[K, int]:
        """Each entry's estimated bytes (as last measured), oldest first."""
        with self._lock:
            return {key: self._sizes.get(key, 0) for key in self._data}

    # -- internals (the lock held) ---------------------------------------------------------------

    def _measure(self, value: V) -> int:
        return int(self._size_of(value)) if self._size_of is not None else 0

    def _store(self, key: K, value: V, size: int) -> None:
        self._nbytes += size - self._sizes.get(key, 0)
        self._data[key] = value
        self._sizes[key] = size
        self._data.move_to_end(key)

    def _over(self) -> bool:
        return len(self._data) > self.maxsize or (self.max_bytes is not None and self._nbytes > self.max_bytes)

    def _evict(self) -> list[tuple[K, V, int]]:
        evicted: list[tuple[K, V, int]] = []
        if not self._over():
            return evicted
        for key in list(self._data):  # oldest first
            value = self._data[key]
            if self._in_use is not None and self._in_use(value):
                continue
            del self._data[key]
            size = self._sizes.pop(key, 0)
            self._nbytes -= size
            evicted.append((key, value, size))
            if not self._over():
                break
        self.evictions += len(evicted)
        return evicted

    def _report(self, evicted: list[tuple[K, V, int]]) -> int:
        nbytes = sum(size for _, _, size in evicted)
        values = [value for _, value, _ in evicted]
        evicted.clear()
        if nbytes and self._on_evict is not None:
            self._on_evict(values, nbytes)
        return nbytes

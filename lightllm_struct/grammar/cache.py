"""One bounded, thread-safe least-recently-used map for the caches of the grammar engine and its users.

Every cache that user input can fill (schemas, literals, terminals) must be bounded: a long-running server
sees an unbounded stream of distinct ones.
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
    """A map of at most ``maxsize`` entries that forgets the least recently used one first.

    Parameters
    ----------
    maxsize:
        Most entries kept (>= 1).

    Raises
    ------
    ValueError
        For ``maxsize < 1``.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"LRU maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: K) -> bool:
        return key in self._data

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value of ``key`` (now the most recently used), or ``default``."""
        with self._lock:
            value = self._data.get(key, _MISSING)
            if value is _MISSING:
                return default
            self._data.move_to_end(key)
            return value  # type: ignore[return-value]

    def put(self, key: K, value: V) -> None:
        """Set ``key`` to ``value`` (the most recently used), forgetting the oldest entries beyond ``maxsize``."""
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def setdefault(self, key: K, make: Callable[[], V]) -> V:
        """The value of ``key``; if absent, ``make()`` is stored and returned (under the lock: keep it cheap)."""
        with self._lock:
            value = self._data.get(key, _MISSING)
            if value is _MISSING:
                value = make()
                self._data[key] = value
                while len(self._data) > self.maxsize:
                    self._data.popitem(last=False)
            else:
                self._data.move_to_end(key)
            return value  # type: ignore[return-value]

    def pop(self, key: K) -> V | None:
        """Forget ``key``; its value, or None."""
        with self._lock:
            return self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

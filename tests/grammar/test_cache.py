from __future__ import annotations

import threading

import pytest

from lightllm_struct.grammar.cache import LRU


def test_lru_forgets_the_least_recently_used_first():
    lru = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # "b" is now the oldest
    lru.put("c", 3)
    assert "b" not in lru and lru.get("a") == 1 and lru.get("c") == 3 and len(lru) == 2
    assert lru.setdefault("a", lambda: 9) == 1 and lru.setdefault("d", lambda: 4) == 4
    assert "c" not in lru and lru.pop("d") == 4 and lru.get("d", "none") == "none"


def test_lru_refuses_a_size_below_one():
    with pytest.raises(ValueError, match="maxsize"):
        LRU(0)


def test_lru_stays_bounded_under_concurrent_writers():
    lru: LRU[int, int] = LRU(64)

    def write(base):
        for i in range(2000):
            lru.put(base + i, i)
            lru.get(base + i // 2)

    threads = [threading.Thread(target=write, args=(k * 10_000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(lru) == 64

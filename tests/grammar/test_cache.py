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


class Blob:
    """A cache value of a given (mutable) size that can be marked in use."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes, self.busy = nbytes, False


def _blobs(max_bytes: int, released: list | None = None) -> LRU:
    return LRU(100, max_bytes=max_bytes, size_of=lambda b: b.nbytes, in_use=lambda b: b.busy,
               on_evict=None if released is None else lambda values, nbytes: released.append(nbytes))


def test_a_byte_bound_evicts_by_bytes_not_entries():
    lru = _blobs(1000)
    lru.put("a", Blob(400))
    lru.put("b", Blob(400))
    assert len(lru) == 2 and lru.nbytes == 800
    lru.put("c", Blob(300))  # 1100 > 1000: the oldest goes, though 3 entries are far below 100
    assert "a" not in lru and list(lru.sizes()) == ["b", "c"] and lru.nbytes == 700 and lru.evictions == 1
    lru.put("d", Blob(950))  # alone over nearly all the bound: everything older goes
    assert list(lru.sizes()) == ["d"] and lru.nbytes == 950


def test_an_entry_in_use_is_never_evicted_even_over_the_bound():
    lru = _blobs(1000)
    busy = Blob(600)
    busy.busy = True
    lru.put("busy", busy)
    lru.put("idle", Blob(300))
    lru.put("new", Blob(300))  # over: the idle one goes, the older busy one stays
    assert "busy" in lru and "idle" not in lru and "new" in lru
    huge = Blob(5000)
    huge.busy = True  # a compile still running, say
    lru.put("huge", huge)
    assert list(lru.sizes()) == ["busy", "huge"] and lru.nbytes == 5600  # over the bound: both are in use
    busy.busy = huge.busy = False
    lru.refresh()
    assert len(lru) == 0 and lru.nbytes == 0  # each alone is over the bound once nothing uses it


def test_refresh_remeasures_values_that_grew_and_evicts():
    released: list = []
    lru = _blobs(1000, released)
    grows = Blob(100)
    lru.put("grows", grows)
    lru.put("other", Blob(100))
    grows.nbytes = 950  # its masks filled
    assert lru.nbytes == 200  # as last measured
    assert lru.refresh() == 950 and list(lru.sizes()) == ["other"] and released == [950]
    other = lru.get("other")
    other.nbytes = 400
    assert lru.refresh("other") == 0 and lru.nbytes == 400  # one key re-measured, under the bound


def test_on_evict_gets_the_values_and_their_bytes_after_the_lock():
    seen: list = []
    lru = LRU(1, size_of=lambda b: b.nbytes, on_evict=lambda values, nbytes: seen.append(
        ([v.nbytes for v in values], nbytes, lru.get("b") is not None)))  # the lock is free: get() works
    lru.put("a", Blob(10))
    lru.put("b", Blob(1))
    assert seen == [([10], 10, True)]
    quiet = LRU(1, on_evict=lambda values, nbytes: seen.append(nbytes))
    quiet.put("a", Blob(0))
    quiet.put("b", Blob(0))
    assert len(seen) == 1  # nothing measured: no bytes to report


def test_a_byte_bound_below_one_is_refused():
    with pytest.raises(ValueError, match="max_bytes"):
        LRU(4, max_bytes=0)

from __future__ import annotations

import torch

from lightllm_struct.engine.kv_cache import SlotAllocator
from lightllm_struct.engine.prefix_cache import PrefixCache


def _cache(n=32):
    alloc = SlotAllocator(n)
    return alloc, PrefixCache(alloc)


def test_match_returns_longest_cached_prefix_and_splits_edges():
    alloc, cache = _cache()
    slots = alloc.alloc(5)
    assert cache.insert([1, 2, 3, 4, 5], slots) == 0
    got, node = cache.match([1, 2, 3, 9])
    assert got.tolist() == slots[:3].tolist()
    assert cache.num_cached == 5 and cache.num_evictable == 5
    got, _ = cache.match([7])
    assert got.numel() == 0


def test_insert_reports_known_prefix_so_caller_frees_duplicates():
    alloc, cache = _cache()
    a = alloc.alloc(4)
    cache.insert([1, 2, 3, 4], a)
    b = alloc.alloc(5)  # a second request computed [1, 2, 3] itself, then went on differently
    known = cache.insert([1, 2, 3, 8, 9], b)
    assert known == 3
    alloc.free(b[:known])
    assert cache.num_cached == 6 and alloc.num_free == 32 - 6
    assert cache.match([1, 2, 3, 8, 9])[0].tolist() == a[:3].tolist() + b[3:].tolist()


def test_locked_paths_survive_eviction_and_flush_returns_everything():
    alloc, cache = _cache()
    cache.insert([1, 2, 3], alloc.alloc(3))
    cache.insert([4, 5], alloc.alloc(2))
    _, node = cache.match([1, 2])
    cache.lock(node)
    assert cache.num_locked == 2 and cache.num_evictable == 3
    assert cache.flush() == 3  # [3] (split off the locked [1, 2]) and [4, 5]
    assert cache.match([1, 2, 3])[0].numel() == 2
    cache.unlock(node)
    cache.flush()
    assert alloc.num_free == 32 and cache.num_cached == 0


def test_eviction_is_least_recently_used_first():
    alloc, cache = _cache()
    cache.insert([1, 1], alloc.alloc(2))
    cache.insert([2, 2], alloc.alloc(2))
    cache.match([1, 1])  # touch the older one
    cache.evict(1)
    assert cache.match([1, 1])[0].numel() == 2 and cache.match([2, 2])[0].numel() == 0
    assert isinstance(cache.match([1])[0], torch.Tensor)

from __future__ import annotations

import pytest
import torch

from lightllm_struct.engine.kv_cache import KVCacheError, ReqToTokenTable, SlotAllocator


def test_allocator_hands_out_distinct_single_slots_and_takes_them_back():
    alloc = SlotAllocator(10)
    a, b = alloc.alloc(3), alloc.alloc(4)
    assert alloc.num_free == 3 and alloc.num_total == 10
    assert len(set(a.tolist()) | set(b.tolist())) == 7 and a.dtype == torch.int64
    alloc.free(a)
    c = alloc.alloc(6)  # freed slots are reusable at once, no fragmentation
    assert alloc.num_free == 0 and len(set(c.tolist()) | set(b.tolist())) == 10
    alloc.free(b)
    alloc.free(c)
    assert alloc.num_free == 10


def test_allocator_refuses_over_allocation_and_double_free():
    alloc = SlotAllocator(4)
    with pytest.raises(KVCacheError):
        alloc.alloc(5)
    s = alloc.alloc(2)
    alloc.free(s)
    with pytest.raises(KVCacheError):
        alloc.free(s)
    with pytest.raises(KVCacheError):
        alloc.free(torch.tensor([3, 3]))
    assert alloc.num_free == 4


def test_table_maps_positions_to_slots_per_row():
    table = ReqToTokenTable(max_rows=2, max_seq_len=8)
    r = table.alloc_row()
    table.write(r, 0, torch.tensor([5, 1]))
    table.write(r, 2, torch.tensor([7]))
    assert table.slots_of(r, 3).tolist() == [5, 1, 7]
    table.alloc_row()
    with pytest.raises(KVCacheError):
        table.alloc_row()
    table.free_row(r)
    assert table.num_free_rows == 1


def test_table_applies_a_steps_writes_together_in_order():
    """Writes are batched until the next read; later writes to a position win, and every read sees them."""
    table = ReqToTokenTable(max_rows=3, max_seq_len=6)
    a, b = table.alloc_row(), table.alloc_row()
    table.write(a, 0, torch.tensor([9, 8, 7]))  # a prefill chunk
    table.write(b, 0, torch.tensor([4]))  # a one-token step
    table.write(b, 1, torch.tensor([5]))
    assert table.rows([b, a], 3).tolist() == [[4, 5, 0], [9, 8, 7]]
    table.write(a, 3, torch.tensor([6]))  # decode-only step: every write is one position
    table.write(b, 2, torch.tensor([3]))
    assert table.slots_of(a, 4).tolist() == [9, 8, 7, 6] and table.slots_of(b, 3).tolist() == [4, 5, 3]
    table.write(a, 1, torch.tensor([1, 2]))  # rewritten after a rollback: the newest value wins
    assert table.rows([a], 4).tolist() == [[9, 1, 2, 6]]


def test_a_device_table_answers_slots_of_from_its_host_copy():
    """On a device, ``slots_of`` reads the host's copy of the writes (a read from the device would wait for
    every queued step); the ``meta`` device holds no data, so only the host copy can answer here."""
    table = ReqToTokenTable(max_rows=2, max_seq_len=16, device="meta")
    row = table.alloc_row()
    table.write(row, 0, torch.tensor([7, 8, 9]))  # a cached prefix
    table.write(row, 3, torch.tensor([4]))  # decode steps
    table.write(row, 4, torch.tensor([5]))
    table.write(row, 0, torch.tensor([1, 2]))  # the prefix cache swaps in its own slots for a prefix
    table.rows([row], 5)  # flushes to the device copy (meta: shapes only)
    assert table.slots_of(row, 5).tolist() == [1, 2, 9, 4, 5]
    assert table.slots_of(row, 2).tolist() == [1, 2]
    table.free_row(row)
    again = table.alloc_row()
    table.write(again, 0, torch.tensor([3]))
    assert again == row and table.slots_of(again, 1).tolist() == [3]

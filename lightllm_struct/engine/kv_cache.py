"""The token-level KV cache's bookkeeping: a free list of single slots and a request-to-slots table.

A page table with page size 1 (LightLLM's design): any free slot serves any token of any request, so memory
is never fragmented and a finished request's slots are reusable by the very next step. The buffers the slots
index are ``models.kv_cache.KVCache``.
"""
from __future__ import annotations

import torch

from lightllm_struct.errors import LightLLMStructError


class KVCacheError(LightLLMStructError):
    """Misuse of the KV pool (double free, over-allocation): a bug in the engine, never the user's fault."""


class SlotAllocator:
    """A free list of single KV slots, kept on the host so allocation never synchronises a device.

    Invariant: every slot is either in the free list or owned by exactly one holder (a request or the prefix
    cache); ``_in_use`` catches double frees at once instead of corrupting another request's KV later.
    """

    def __init__(self, num_slots: int) -> None:
        self._free = torch.arange(num_slots - 1, -1, -1, dtype=torch.int64)
        self._num_free = num_slots
        self._in_use = torch.zeros(num_slots, dtype=torch.bool)
        self.num_total = num_slots

    @property
    def num_free(self) -> int:
        return self._num_free

    def alloc(self, n: int) -> torch.Tensor:
        """Take ``n`` free slots (int64 tensor of slot ids).

        Raises
        ------
        KVCacheError
            If fewer than ``n`` are free: callers check ``num_free`` first (the scheduler evicts or preempts).
        """
        if n > self._num_free:
            raise KVCacheError(f"asked for {n} KV slots, only {self._num_free} free")
        slots = self._free[self._num_free - n:self._num_free].clone()
        self._num_free -= n
        self._in_use[slots] = True
        return slots

    def free(self, slots: torch.Tensor) -> None:
        """Return ``slots`` to the pool.

        Raises
        ------
        KVCacheError
            If any of them is already free (a double free).
        """
        if slots.numel() == 0:
            return
        slots = slots.to(device="cpu", dtype=torch.int64)
        if not bool(self._in_use[slots].all()) or slots.unique().numel() != slots.numel():
            raise KVCacheError("double free of KV slots")
        self._in_use[slots] = False
        n = slots.numel()
        self._free[self._num_free:self._num_free + n] = slots
        self._num_free += n


class ReqToTokenTable:
    """Rows of ``[max_seq_len]`` slot ids, one row per running request: position -> KV slot.

    Attention gathers a request's context through its row, so a request's slots need not be contiguous.
    On a device the host keeps a copy of each row's slots as it writes them (``slots_of``): reading them back
    from the device would wait for every step queued there, and a request's prompt is cached and its slots
    freed while the next forward runs.
    """

    def __init__(self, *, max_rows: int, max_seq_len: int, device: torch.device | str = "cpu") -> None:
        self.table = torch.zeros((max_rows, max_seq_len), dtype=torch.int64, device=device)
        self.max_seq_len = max_seq_len
        self._free_rows = list(range(max_rows - 1, -1, -1))
        self._pending: list[tuple[int, int, torch.Tensor]] = []
        self._host: list[list[int]] | None = None if self.table.device.type == "cpu" else [[] for _ in range(max_rows)]

    @property
    def num_free_rows(self) -> int:
        return len(self._free_rows)

    def alloc_row(self) -> int:
        if not self._free_rows:
            raise KVCacheError("no free request row in the request-to-slots table")
        return self._free_rows.pop()

    def free_row(self, row: int) -> None:
        if self._host is not None:
            self._host[row] = []
        self._free_rows.append(row)

    def write(self, row: int, start: int, slots: torch.Tensor) -> None:
        """Record that positions ``start..start+len(slots)`` of ``row`` live in ``slots``.

        Writes are applied together at the next :meth:`flush` (every read flushes first): one host-to-device
        copy a step instead of one small synchronous copy per request.
        """
        if slots.numel():
            self._pending.append((row, start, slots))
            if self._host is not None:
                host = self._host[row]
                if len(host) < start:
                    host.extend([0] * (start - len(host)))
                host[start:start + slots.numel()] = slots.tolist()

    def flush(self) -> None:
        """Apply the recorded writes to the table."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        width = self.max_seq_len
        if all(slots.numel() == 1 for _, _, slots in pending):  # a decode step: one position per request
            index = torch.tensor([row * width + start for row, start, _ in pending], dtype=torch.int64)
        else:
            index = torch.cat([torch.arange(start, start + slots.numel()) + row * width for row, start, slots in pending])
        values = torch.cat([slots.to(device="cpu", dtype=torch.int64) for _, _, slots in pending])
        device = self.table.device
        self.table.view(-1).index_copy_(0, index.to(device, non_blocking=True), values.to(device, non_blocking=True))

    def rows(self, rows: list[int], length: int) -> torch.Tensor:
        """The ``[len(rows), length]`` slots of ``rows`` (on the table's device), pending writes applied."""
        self.flush()
        index = torch.tensor(rows, dtype=torch.int64).to(self.table.device, non_blocking=True)
        return self.table[index, :length]

    def slots_of(self, row: int, length: int) -> torch.Tensor:
        """The slots of the first ``length`` positions of ``row`` (host copy; never waits for the device)."""
        if self._host is not None:
            return torch.tensor(self._host[row][:length], dtype=torch.int64)
        self.flush()
        return self.table[row, :length].clone()

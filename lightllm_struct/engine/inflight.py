"""A step's sampled tokens on their way from the device to the host (the overlapped step loop).

With overlap, step t+1's forward is queued before step t's tokens are read: a sequence whose token is still in
flight is scheduled with one more token than the host knows, and that token's id is copied into t+1's inputs
on the device (``patches``). The host reads the tokens (``tokens``) while t+1 runs. A sampled row is kept only
if the host state it was sampled from still holds when the sample is enqueued: a request that finished, or
got forced tokens appended, after its step was launched has its sample discarded (``keep``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lightllm_struct.engine.scheduler import ScheduledBatch
from lightllm_struct.engine.sequence import Sequence


@dataclass
class InflightTokens:
    """Step t's tokens: ``device [n]`` in the sampling rows' order, and a pinned host copy under way."""

    seqs: list[Sequence]
    keep: list[bool]
    device: torch.Tensor
    host: torch.Tensor | None = None
    ready: torch.cuda.Event | None = None

    @classmethod
    def start(cls, batch: ScheduledBatch, tokens: torch.Tensor) -> InflightTokens:
        """Start the copy of ``batch``'s sampled ``tokens`` to the host; marks the kept rows in flight."""
        seqs = batch.sampled
        keep = [not s.finished and batch.starts[i] + batch.lens[i] == s.num_tokens
                for s, i in zip(seqs, batch.sample_rows)]
        for seq, kept in zip(seqs, keep):
            seq.num_inflight = int(kept)
        inflight = cls(seqs, keep, tokens)
        if tokens.is_cuda:
            inflight.host = torch.empty(tokens.shape, dtype=tokens.dtype, pin_memory=True)
            inflight.host.copy_(tokens, non_blocking=True)
            inflight.ready = torch.cuda.Event()
            inflight.ready.record()
        return inflight

    def tokens(self) -> list[int]:
        """The token ids on the host (waits for the copy); every row is out of flight afterwards."""
        for seq in self.seqs:
            seq.num_inflight = 0
        if self.ready is not None:
            self.ready.synchronize()
            return self.host.tolist()
        return self.device.tolist()

    def patches(self, batch: ScheduledBatch) -> tuple[list[int], list[int]]:
        """``(rows, sources)``: the batch rows whose last new token is in flight, and its index in ``device``."""
        where = {id(s): j for j, (s, kept) in enumerate(zip(self.seqs, self.keep)) if kept}
        rows, sources = [], []
        for i, (seq, start, n) in enumerate(zip(batch.seqs, batch.starts, batch.lens)):
            if seq.num_inflight and start + n == seq.num_tokens + 1 and id(seq) in where:
                rows.append(i)
                sources.append(where[id(seq)])
        return rows, sources

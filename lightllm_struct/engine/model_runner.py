"""Turn a scheduled batch into model inputs, run the model, and hand back each sampling row's logits.

On CUDA the forward is launched asynchronously and ``launch`` returns at once, so the grammar masks can be
filled on the CPU meanwhile; ``LogitsFuture.result()`` is where the host first waits for the device.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lightllm_struct.engine.graph_inputs import pad_step
from lightllm_struct.engine.kv_cache import ReqToTokenTable
from lightllm_struct.engine.scheduler import ScheduledBatch
from lightllm_struct.models.attention import AttentionMetadata
from lightllm_struct.models.kv_cache import KVCache


@dataclass
class LogitsFuture:
    """The logits of one step, possibly still being computed on the device."""

    logits: torch.Tensor | None  # float32 [num sampling rows, V]; None when no row samples
    done: torch.cuda.Event | None = None

    def result(self) -> torch.Tensor | None:
        if self.done is not None:
            self.done.synchronize()
        return self.logits


class ModelRunner:
    """Runs ``model`` over the token-level KV cache.

    Parameters
    ----------
    model:
        A model with ``forward(input_ids, positions, *, meta, kv_cache)`` and ``compute_logits(hidden)``.
    kv_cache, table:
        The KV pool and the request-to-slots table the scheduler filled for this step.
    device:
        Where inputs are built.
    graphs:
        Captured decode steps (``engine/cuda_graphs.CUDAGraphRunner``, CUDA only) or None.
    """

    def __init__(self, model, *, kv_cache: KVCache, table: ReqToTokenTable, device: torch.device,
                 graphs=None) -> None:
        self.model, self.kv_cache, self.table, self.device = model, kv_cache, table, device
        self.graphs = graphs

    def launch(self, batch: ScheduledBatch) -> LogitsFuture:
        """Start the forward of ``batch``; returns the logits of the last token of each sampling sequence."""
        if batch.empty:
            return LogitsFuture(None)
        rows = batch.sample_rows
        seq_lens = [start + n for start, n in zip(batch.starts, batch.lens)]
        if self.graphs is not None and self.graphs.can_run(len(batch.seqs), max(batch.lens), max(seq_lens)):
            # Decode steps (forced tokens included): one graph replay replaces hundreds of launches.
            logits = self._replay(batch, max(seq_lens))
            if len(rows) != len(batch.seqs):
                logits = logits[torch.tensor(rows, device=self.device)]
        else:
            input_ids, positions, meta = self.prepare(batch)
            hidden = self.model.forward(input_ids, positions, meta=meta, kv_cache=self.kv_cache)
            if not rows:
                return LogitsFuture(None)
            last = meta.query_start_loc[1:].long()[torch.tensor(rows, device=self.device)] - 1
            logits = self.model.compute_logits(hidden[last]).float()
        if not rows:
            return LogitsFuture(None)
        done = None
        if logits.is_cuda:
            done = torch.cuda.Event()
            done.record()
        return LogitsFuture(logits, done)

    def _replay(self, batch: ScheduledBatch, max_seq_len: int) -> torch.Tensor:
        """Every sequence's last-token logits from the captured graph of the batch's padded shape."""
        size, k = self.graphs.padded_shape(len(batch.seqs), max(batch.lens))
        token_ids = [seq.token_ids(start, n) for seq, start, n in zip(batch.seqs, batch.starts, batch.lens)]
        layout = pad_step(token_ids, batch.starts, torch.cat(batch.slots).tolist(), size=size, k=k,
                          scratch_slot=self.graphs.scratch_slot)
        table_rows = self.table.rows([s.row for s in batch.seqs], max_seq_len)
        return self.graphs.run_padded(layout, table_rows, num_seqs=len(batch.seqs), k=k)

    def prepare(self, batch: ScheduledBatch) -> tuple[torch.Tensor, torch.Tensor, AttentionMetadata]:
        """Flattened ``input_ids [T]``, ``positions [T]`` and the attention metadata of ``batch``."""
        ids: list[int] = []
        pos: list[int] = []
        for seq, start, n in zip(batch.seqs, batch.starts, batch.lens):
            ids.extend(seq.token_ids(start, n))
            pos.extend(range(start, start + n))
        seq_lens = [start + n for start, n in zip(batch.starts, batch.lens)]
        req_to_token = self.table.rows([s.row for s in batch.seqs], max(seq_lens))
        # The new tokens' slots are on the host already: one copy instead of a slice of the table per request.
        meta = AttentionMetadata.build(seq_lens, list(batch.lens), req_to_token, device=self.device,
                                       slot_mapping=torch.cat(batch.slots))
        as_tensor = lambda xs: torch.tensor(xs, dtype=torch.int64, device=self.device)  # noqa: E731
        return as_tensor(ids), as_tensor(pos), meta

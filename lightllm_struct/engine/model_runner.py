"""Turn a scheduled batch into model inputs, run the model, and hand back each sampling row's logits.

On CUDA the forward is launched asynchronously and ``launch`` returns at once, so the grammar masks can be
filled on the CPU meanwhile; ``LogitsFuture.result()`` is where the host first waits for the device.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

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
    # (sequence, first position, logits [n, V] of positions first...) of prompts that asked for logprobs
    prompt_logits: list[tuple[Any, int, torch.Tensor]] = field(default_factory=list)

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

    def launch(self, batch: ScheduledBatch, inflight=None) -> LogitsFuture:
        """Start the forward of ``batch``; returns the logits of the last token of each sampling sequence.

        ``inflight`` (an ``InflightTokens``) holds the previous step's tokens still on the device: the rows
        whose last new token is one of them get its id there, without the host waiting for it.
        """
        if batch.empty:
            return LogitsFuture(None)
        rows = batch.sample_rows
        wanted = _prompt_logit_spans(batch)
        seq_lens = [start + n for start, n in zip(batch.starts, batch.lens)]
        patch_rows, sources = inflight.patches(batch) if inflight is not None else ([], [])
        patch = None
        if self.graphs is not None and not wanted and \
                self.graphs.can_run(len(batch.seqs), max(batch.lens), max(seq_lens)):
            # Decode steps (forced tokens included): one graph replay replaces hundreds of launches.
            size, k = self.graphs.padded_shape(len(batch.seqs), max(batch.lens))
            if patch_rows:
                patch = self._patch([i * k + k - 1 for i in patch_rows], sources, inflight)
            logits, prompt = self._replay(batch, max(seq_lens), size, k, patch), []
            if len(rows) != len(batch.seqs):
                logits = logits[torch.tensor(rows, dtype=torch.long, device=self.device)]
        else:
            input_ids, positions, meta = self.prepare(batch)
            if patch_rows:
                ends = [start + n for start, n in zip([0, *itertools.accumulate(batch.lens)], batch.lens)]
                input_ids.index_copy_(0, *self._patch([ends[i] - 1 for i in patch_rows], sources, inflight))
            hidden = self.model.forward(input_ids, positions, meta=meta, kv_cache=self.kv_cache)
            prompt = [(batch.seqs[i], first, self.model.compute_logits(hidden[lo:hi]).float())
                      for i, first, lo, hi in wanted]
            if not rows:
                return LogitsFuture(None, prompt_logits=prompt)
            last = meta.query_start_loc[1:].long()[torch.tensor(rows, dtype=torch.long, device=self.device)] - 1
            logits = self.model.compute_logits(hidden[last]).float()
        if not rows:
            return LogitsFuture(None)
        done = None
        if logits.is_cuda:
            done = torch.cuda.Event()
            done.record()
        return LogitsFuture(logits, done, prompt_logits=prompt)

    def _patch(self, positions: list[int], sources: list[int], inflight) -> tuple[torch.Tensor, torch.Tensor]:
        """``(positions, ids)`` on the device: where in the step's input ids the in-flight tokens go."""
        index = torch.tensor([positions, sources], dtype=torch.int64).to(self.device, non_blocking=True)
        return index[0], inflight.device.index_select(0, index[1])

    def _replay(self, batch: ScheduledBatch, max_seq_len: int, size: int, k: int, patch) -> torch.Tensor:
        """Every sequence's last-token logits from the captured graph of the batch's padded shape."""
        layout = pad_step(_new_tokens(batch), batch.starts, torch.cat(batch.slots).tolist(), size=size, k=k,
                          scratch_slot=self.graphs.scratch_slot)
        table_rows = self.table.rows([s.row for s in batch.seqs], max_seq_len)
        return self.graphs.run_padded(layout, table_rows, num_seqs=len(batch.seqs), k=k, patch=patch)

    def prepare(self, batch: ScheduledBatch) -> tuple[torch.Tensor, torch.Tensor, AttentionMetadata]:
        """Flattened ``input_ids [T]``, ``positions [T]`` and the attention metadata of ``batch``."""
        ids: list[int] = []
        pos: list[int] = []
        for toks, start, n in zip(_new_tokens(batch), batch.starts, batch.lens):
            ids.extend(toks)
            pos.extend(range(start, start + n))
        seq_lens = [start + n for start, n in zip(batch.starts, batch.lens)]
        req_to_token = self.table.rows([s.row for s in batch.seqs], max(seq_lens))
        # The new tokens' slots are on the host already: one copy instead of a slice of the table per request.
        meta = AttentionMetadata.build(seq_lens, list(batch.lens), req_to_token, device=self.device,
                                       slot_mapping=torch.cat(batch.slots))
        as_tensor = lambda xs: torch.tensor(xs, dtype=torch.int64, device=self.device)  # noqa: E731
        return as_tensor(ids), as_tensor(pos), meta


def _new_tokens(batch: ScheduledBatch) -> list[list[int]]:
    """Each sequence's new token ids; a token still in flight is a 0 here, its id is patched in on the device."""
    out = []
    for seq, start, n in zip(batch.seqs, batch.starts, batch.lens):
        toks = seq.token_ids(start, n)
        out.append(toks if len(toks) == n else toks + [0] * (n - len(toks)))
    return out


def _prompt_logit_spans(batch: ScheduledBatch) -> list[tuple[int, int, int, int]]:
    """``(index, first position, lo, hi)``: rows ``lo:hi`` of the step's hidden states hold positions
    ``first...`` of a prompt that asked for logprobs, up to the one before its last token."""
    spans, offset = [], 0
    for i, (seq, start, n) in enumerate(zip(batch.seqs, batch.starts, batch.lens)):
        last = min(start + n, len(seq.req.prompt_token_ids) - 1)  # logits at p score token p + 1
        if seq.req.sampling.prompt_logprobs is not None and start < last:
            spans.append((i, start, offset, offset + last - start))
        offset += n
    return spans

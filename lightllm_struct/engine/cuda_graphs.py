"""Decode steps captured as CUDA graphs, one per batch size, so a step costs one launch instead of hundreds.

A decode step of B sequences runs the graph of the smallest captured size >= B: the real rows' inputs are
copied into that graph's static buffers and the rest are padding rows. A padding row has context length 0
(the decode kernel writes zeros for it) and writes its K/V into a scratch slot the engine reserved, so it
never touches a live request's cache. The decode split count and the longest context are fixed at capture,
so one graph serves every context length up to ``max_context``.

Hook for the engine (``ModelRunner.launch``)::

    if self.graphs is not None and self.graphs.can_run(meta):
        logits = self.graphs.run(input_ids, positions, meta)[rows]
    else:
        hidden = self.model.forward(...); logits = self.model.compute_logits(hidden[last])
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lightllm_struct.errors import LightLLMStructError
from lightllm_struct.models.attention_triton import TritonAttentionBackend
from lightllm_struct.kernels.attention_decode import default_num_splits
from lightllm_struct.models.attention import AttentionMetadata

DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128)


class CUDAGraphError(LightLLMStructError):
    """A step was handed to a graph it does not fit (a caller bug: check :meth:`can_run` first)."""


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    input_ids: torch.Tensor
    positions: torch.Tensor
    meta: AttentionMetadata
    logits: torch.Tensor


class CUDAGraphRunner:
    """Captures ``model``'s decode step (forward + logits) for each of ``batch_sizes``.

    Parameters
    ----------
    model:
        ``forward(input_ids, positions, *, meta, kv_cache, attn_backend)`` and ``compute_logits(hidden)``.
    kv_cache:
        The engine's pool; the graphs read and write its buffers in place.
    scratch_slot:
        A KV slot reserved for padding rows (never handed to a request).
    max_context:
        Longest context (cached + new token) a captured step may have; the slot-table width.
    batch_sizes:
        Sizes to capture; a step of B rows uses the smallest size >= B.
    """

    def __init__(self, model, kv_cache, *, scratch_slot: int, max_context: int,
                 batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES) -> None:
        self.model, self.kv_cache = model, kv_cache
        self.scratch_slot, self.max_context = scratch_slot, max_context
        self.batch_sizes = tuple(sorted(set(batch_sizes)))
        self.device = kv_cache.k_buffers[0].device
        self._graphs: dict[int, _Graph] = {}
        self._pool = None

    def capture(self) -> None:
        """Capture every size, largest first so the smaller graphs reuse its memory pool."""
        for size in reversed(self.batch_sizes):
            self._graphs[size] = self._capture_one(size)

    def _static_meta(self, size: int) -> AttentionMetadata:
        dev = self.device
        return AttentionMetadata(
            slot_mapping=torch.full((size,), self.scratch_slot, dtype=torch.int64, device=dev),
            req_to_token=torch.full((size, self.max_context), self.scratch_slot, dtype=torch.int32, device=dev),
            seq_lens=torch.ones(size, dtype=torch.int32, device=dev),
            query_start_loc=torch.arange(size + 1, dtype=torch.int32, device=dev),
            seq_lens_cpu=[self.max_context] * size, query_lens_cpu=[1] * size,
            max_seq_len=self.max_context, max_query_len=1)

    def _capture_one(self, size: int) -> _Graph:
        meta = self._static_meta(size)
        input_ids = torch.zeros(size, dtype=torch.int64, device=self.device)
        positions = torch.zeros(size, dtype=torch.int64, device=self.device)
        n_kv = self.kv_cache.k_buffers[0].shape[1]
        backend = TritonAttentionBackend(
            decode_num_splits=default_num_splits(size, n_kv, self.max_context, self.device))

        def step() -> torch.Tensor:
            hidden = self.model.forward(input_ids, positions, meta=meta, kv_cache=self.kv_cache,
                                        attn_backend=backend)
            return self.model.compute_logits(hidden)

        # Warm-up on a side stream compiles the kernels and grows lazily built tables (rotary cache)
        # outside the capture, as torch.cuda.graph requires.
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                step()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            logits = step()
        self._pool = graph.pool()
        return _Graph(graph, input_ids, positions, meta, logits)

    def can_run(self, meta: AttentionMetadata) -> bool:
        """Whether a captured graph serves this step (decode only, small enough, short enough)."""
        return (bool(self._graphs) and meta.is_decode and meta.num_seqs <= self.batch_sizes[-1]
                and meta.max_seq_len <= self.max_context)

    def run(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        """Replay the step for ``meta``'s B sequences; returns fp32 logits ``[B, V]`` (a view, valid until
        the next replay of the same graph).

        Raises
        ------
        CUDAGraphError
            If :meth:`can_run` is false for ``meta``.
        """
        if not self.can_run(meta):
            raise CUDAGraphError(f"no captured graph for {meta.num_seqs} sequences of context "
                                 f"{meta.max_seq_len} (sizes {self.batch_sizes}, max {self.max_context})")
        batch = meta.num_seqs
        g = self._graphs[next(s for s in self.batch_sizes if s >= batch)]
        g.input_ids[:batch].copy_(input_ids)
        g.positions[:batch].copy_(positions)
        sm = g.meta
        sm.slot_mapping[:batch].copy_(meta.slot_mapping)
        sm.slot_mapping[batch:].fill_(self.scratch_slot)
        sm.seq_lens[:batch].copy_(meta.seq_lens[:batch])
        sm.seq_lens[batch:].zero_()  # padding rows: no context, zero attention output
        width = min(meta.req_to_token.shape[1], self.max_context)
        sm.req_to_token[:batch, :width].copy_(meta.req_to_token[:batch, :width])
        g.graph.replay()
        return g.logits[:batch]

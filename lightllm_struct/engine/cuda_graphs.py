"""Decode steps captured as CUDA graphs, one per (batch size, new tokens per sequence), so a step costs one
launch instead of hundreds.

A step of B sequences with up to k new tokens each (k > 1: tokens a grammar forced, jump-forward) replays the
graph of the smallest captured shape that holds it, laid out and padded as ``graph_inputs`` describes. All
graphs share one set of static input buffers and one slot table, so memory does not grow with the number of
shapes. The decode split count and the longest context are fixed at capture, so one graph serves every
context length up to ``max_context``.

Hook for the engine (``ModelRunner.launch``)::

    if graphs.can_run(num_seqs, max_query_len, max_seq_len):
        logits = graphs.run_padded(host_layout, table_rows, num_seqs=B, k=k)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch

from lightllm_struct.engine.graph_inputs import (
    DEFAULT_BATCH_SIZES, IDS, POSITIONS, ROW_LENS, SLOTS, bucket,
)
from lightllm_struct.errors import LightLLMStructError
from lightllm_struct.models.attention import AttentionMetadata

logger = logging.getLogger(__name__)


class CUDAGraphError(LightLLMStructError):
    """A step was handed to a graph it does not fit (a caller bug: check :meth:`can_run` first)."""


@dataclass
class _Graph:
    step: Callable[[], torch.Tensor]
    meta: AttentionMetadata
    graph: torch.cuda.CUDAGraph | None  # None: replayed eagerly (CPU tests of the padding logic)
    logits: torch.Tensor | None = None

    def replay(self, max_seq_len: int) -> torch.Tensor:
        if self.graph is None:
            # Eager only: the torch backend sizes its gathers by it (a captured graph has its kernels fixed).
            self.meta.max_seq_len = max_seq_len
            return self.step()
        self.graph.replay()
        return self.logits


class CUDAGraphRunner:
    """Captures ``model``'s decode step (forward + logits) for each batch size and tokens per sequence.

    Parameters
    ----------
    model:
        ``forward(input_ids, positions, *, meta, kv_cache, attn_backend)`` and ``compute_logits(hidden)``.
    kv_cache:
        The engine's pool; the graphs read and write its buffers in place.
    scratch_slot:
        A KV slot reserved for dummy and padding rows (never handed to a request).
    max_context:
        Longest context (cached + new tokens) a captured step may have; the slot-table width.
    batch_sizes:
        Sizes to capture; a step of B sequences uses the smallest size >= B.
    tokens_per_seq:
        New tokens per sequence to capture (1 = plain decode; more = jump-forward's forced tokens).
    eager:
        Run the padded steps without capturing (the CPU path of the tests: same buffers, same padding).
    """

    def __init__(self, model, kv_cache, *, scratch_slot: int, max_context: int,
                 batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES, tokens_per_seq: tuple[int, ...] = (1,),
                 eager: bool = False) -> None:
        self.model, self.kv_cache = model, kv_cache
        self.scratch_slot, self.max_context = scratch_slot, max_context
        self.batch_sizes = tuple(sorted(set(batch_sizes)))
        self.tokens_per_seq = tuple(sorted(set(tokens_per_seq)))
        self.eager = eager
        self.device = kv_cache.k_buffers[0].device
        self._graphs: dict[tuple[int, int], _Graph] = {}
        self._pool = None
        rows = self.batch_sizes[-1] * self.tokens_per_seq[-1]
        # A graph of R rows reads its inputs from the first 4 * R entries, as [4, R]: one contiguous copy a step.
        self._flat = torch.zeros(4 * rows, dtype=torch.int64, device=self.device)
        self._qsl = torch.arange(rows + 1, dtype=torch.int32, device=self.device)
        self._table = torch.full((self.batch_sizes[-1], max_context), scratch_slot, dtype=torch.int32,
                                 device=self.device)
        self._logits: torch.Tensor | None = None  # shared output of the multi-token graphs
        pinned = self.device.type == "cuda"
        # Two host buffers, each reused only once the copy out of it has run (its event): the host may fill
        # step t+1's while step t's copy still waits in the stream.
        self._staging = [torch.zeros(4 * rows, dtype=torch.int64, pin_memory=pinned) for _ in range(2)]
        self._copied = [torch.cuda.Event() if pinned else None for _ in range(2)]
        self._turn = 0

    @property
    def max_tokens_per_seq(self) -> int:
        return self.tokens_per_seq[-1]

    def capture(self) -> None:
        """Capture every shape, largest first so the smaller graphs reuse its memory pool.

        A shape whose capture runs out of memory is skipped (logged): its steps take the next larger shape,
        or the eager path.
        """
        for k in reversed(self.tokens_per_seq):
            for size in reversed(self.batch_sizes):
                try:
                    self._graphs[(size, k)] = self._capture_one(size, k)
                except torch.OutOfMemoryError:
                    logger.warning("no CUDA graph for %d sequences x %d tokens: out of memory", size, k)
                    torch.cuda.empty_cache()

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """The captured ``(batch size, tokens per sequence)`` shapes."""
        return sorted(self._graphs)

    def _inputs(self, rows: int) -> torch.Tensor:
        """The ``[4, rows]`` static inputs (ids, positions, slots, row lengths) of the graphs of ``rows`` rows."""
        return self._flat[:4 * rows].view(4, rows)

    def _meta(self, size: int, k: int) -> AttentionMetadata:
        rows = size * k
        inputs = self._inputs(rows)
        return AttentionMetadata(
            slot_mapping=inputs[SLOTS], req_to_token=self._table[:size],
            seq_lens=inputs[ROW_LENS], query_start_loc=self._qsl[:rows + 1],
            seq_lens_cpu=[self.max_context] * rows, query_lens_cpu=[1] * rows,
            max_seq_len=self.max_context, max_query_len=1, rows_per_seq=k)

    def _backend(self, rows: int):
        attn = getattr(self.model, "attn_backend", None)
        if not getattr(attn, "supports_cuda_graphs", False):
            return attn  # the torch backend (eager tests): nothing to fix for replays
        from lightllm_struct.models.attention_triton import TritonAttentionBackend
        from lightllm_struct.kernels.attention_decode import default_num_splits

        n_kv = self.kv_cache.k_buffers[0].shape[1]
        return TritonAttentionBackend(decode_num_splits=default_num_splits(rows, n_kv, self.max_context,
                                                                           self.device))

    def _capture_one(self, size: int, k: int) -> _Graph:
        meta, rows = self._meta(size, k), size * k
        inputs = self._inputs(rows)
        inputs.zero_()  # warm-up and capture on padding rows only: no context, scratch slot
        inputs[SLOTS].fill_(self.scratch_slot)
        input_ids, positions = inputs[IDS], inputs[POSITIONS]
        backend = self._backend(rows)
        if k > 1 and self._logits is None:
            self._logits = torch.empty(self.batch_sizes[-1], self.model.config.vocab_size, dtype=torch.float32,
                                       device=self.device)

        def step() -> torch.Tensor:
            hidden = self.model.forward(input_ids, positions, meta=meta, kv_cache=self.kv_cache,
                                        attn_backend=backend)
            if k == 1:
                return self.model.compute_logits(hidden)
            # Only each sequence's last token samples; its logits go to one buffer all such graphs share.
            out = self._logits[:size]
            out.copy_(self.model.compute_logits(hidden.view(size, k, -1)[:, -1]))
            return out

        if self.eager:
            return _Graph(step, meta, None)
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
        return _Graph(step, meta, graph, logits)

    def _shape(self, num_seqs: int, k: int) -> tuple[int, int] | None:
        size, kk = bucket(num_seqs, self.batch_sizes), bucket(k, self.tokens_per_seq)
        if size is None or kk is None:
            return None
        # A shape skipped at capture: the next larger size of the same k.
        return next(((s, kk) for s in self.batch_sizes if s >= size and (s, kk) in self._graphs), None)

    def can_run(self, num_seqs: int, max_query_len: int, max_seq_len: int) -> bool:
        """Whether a captured graph serves a step of this shape (short enough, small enough)."""
        return max_seq_len <= self.max_context and self._shape(num_seqs, max_query_len) is not None

    def run_padded(self, layout: torch.Tensor, table_rows: torch.Tensor, *, num_seqs: int, k: int,
                   patch: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Replay the step of ``num_seqs`` sequences of up to ``k`` new tokens; fp32 logits ``[num_seqs, V]``
        of each sequence's last new token (a view, valid until the next replay).

        ``layout`` is :func:`graph_inputs.pad_step`'s host tensor for the shape :meth:`padded_shape` gives;
        ``table_rows [num_seqs, >= longest context]`` the sequences' slot-table rows on the device;
        ``patch = (rows, ids)`` device tensors of input ids to set after the copy (tokens still in flight).

        Raises
        ------
        CUDAGraphError
            If no captured graph fits (see :meth:`can_run`).
        """
        shape = self._shape(num_seqs, k)
        if shape is None or table_rows.shape[1] > self.max_context or layout.shape[1] != shape[0] * shape[1]:
            raise CUDAGraphError(f"no captured graph for {num_seqs} sequences x {k} tokens of context "
                                 f"{table_rows.shape[1]} (shapes {self.shapes}, max context {self.max_context})")
        n = layout.numel()
        turn = self._turn
        self._turn ^= 1
        staging, copied = self._staging[turn], self._copied[turn]
        if copied is not None:
            copied.synchronize()  # the copy out of this buffer two steps ago has run
        staging[:n].copy_(layout.view(-1))
        self._flat[:n].copy_(staging[:n], non_blocking=True)
        if copied is not None:
            copied.record()
        if patch is not None:
            self._flat.index_copy_(0, *patch)  # the ids are the layout's first row
        self._table[:num_seqs, :table_rows.shape[1]].copy_(table_rows)
        return self._graphs[shape].replay(table_rows.shape[1])[:num_seqs]

    def padded_shape(self, num_seqs: int, k: int) -> tuple[int, int]:
        """The captured ``(size, k)`` a step of ``num_seqs`` sequences of up to ``k`` new tokens replays.

        Raises
        ------
        CUDAGraphError
            If none fits.
        """
        shape = self._shape(num_seqs, k)
        if shape is None:
            raise CUDAGraphError(f"no captured graph for {num_seqs} sequences x {k} tokens (shapes {self.shapes})")
        return shape

    def run(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        """Replay a plain decode step given as device tensors; fp32 logits ``[B, V]`` (a view, valid until the
        next replay of the same graph). The benchmarks' entry point.

        Raises
        ------
        CUDAGraphError
            If no graph serves ``meta`` (not a decode, too many sequences, too long).
        """
        batch = meta.num_seqs
        if not meta.is_decode or meta.rows_per_seq != 1 or not self.can_run(batch, 1, meta.max_seq_len):
            raise CUDAGraphError(f"no captured graph for {batch} sequences of context {meta.max_seq_len} "
                                 f"(shapes {self.shapes}, max context {self.max_context})")
        size, _ = self.padded_shape(batch, 1)
        inputs = self._inputs(size)
        for row, src in ((IDS, input_ids), (POSITIONS, positions), (SLOTS, meta.slot_mapping),
                         (ROW_LENS, meta.seq_lens[:batch])):
            inputs[row, :batch].copy_(src)
        inputs[:, batch:size].zero_()  # padding rows: no context, zero attention output, scratch slot
        inputs[SLOTS, batch:size].fill_(self.scratch_slot)
        width = min(meta.req_to_token.shape[1], self.max_context)
        self._table[:batch, :width].copy_(meta.req_to_token[:batch, :width])
        return self._graphs[(size, 1)].replay(meta.max_seq_len)[:batch]

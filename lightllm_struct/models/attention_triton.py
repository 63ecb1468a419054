"""The Triton attention backend: :func:`store_kv`, then decode or prefill attention over the slot tables.

Registered in ``models.attention.ATTENTION_BACKENDS`` as ``"triton"`` (the ``"auto"`` choice on CUDA). It
keeps the interface of ``TorchAttentionBackend``: ``forward(q, k, v, *, layer, kv_cache, meta)``. A file of
its own, apart from ``models.attention``, because importing it imports Triton: the registry loads it only when
it is chosen, so a machine without Triton still builds the torch backend.
"""
from __future__ import annotations

import torch

from lightllm_struct.kernels.attention_decode import decode_attention, default_num_splits
from lightllm_struct.kernels.attention_prefill import prefill_attention, store_kv
from lightllm_struct.models.attention import TorchAttentionBackend


class TritonAttentionBackend:
    """Token-level-KV attention through the Triton kernels of this package.

    Parameters
    ----------
    sliding_window:
        Sliding-window models (Mistral) are delegated to the torch backend: the kernels attend over the
        whole context.
    decode_num_splits:
        Fixed flash-decoding split count; CUDA-graph capture sets it so every replay launches the same grid.
        ``None`` chooses per step from the batch and its longest context.
    """

    def __init__(self, *, sliding_window: int | None = None, decode_num_splits: int | None = None) -> None:
        self.sliding_window = sliding_window
        self.decode_num_splits = decode_num_splits
        self._fallback = None
        if sliding_window is not None:
            self._fallback = TorchAttentionBackend(sliding_window=sliding_window)

    @property
    def supports_cuda_graphs(self) -> bool:
        """Captured decode steps replay the kernels; the torch fallback of sliding-window models cannot."""
        return self._fallback is None

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, layer: int, kv_cache,
                meta) -> torch.Tensor:
        """Store the step's K/V into their slots, then attend causally over each sequence's context."""
        if self._fallback is not None:
            return self._fallback.forward(q, k, v, layer=layer, kv_cache=kv_cache, meta=meta)
        k_buf, v_buf = kv_cache.k_buffers[layer], kv_cache.v_buffers[layer]
        store_kv(k.to(k_buf.dtype), v.to(v_buf.dtype), k_buf, v_buf, meta.slot_mapping)
        scale = q.shape[-1] ** -0.5
        batch = len(meta.seq_lens_cpu)
        if meta.is_decode:
            splits = self.decode_num_splits or default_num_splits(batch, k_buf.shape[1], meta.max_seq_len,
                                                                 q.device)
            return decode_attention(q, k_buf, v_buf, meta.req_to_token, meta.seq_lens[:batch], scale=scale,
                                    num_splits=splits, rows_per_seq=meta.rows_per_seq)
        return prefill_attention(q, k_buf, v_buf, meta.req_to_token, meta.seq_lens[:batch],
                                 meta.query_start_loc[:batch + 1], max_query_len=meta.max_query_len,
                                 scale=scale)

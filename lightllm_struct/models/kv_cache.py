"""The KV buffers a model's attention writes and reads: one ``[num_slots, kv_heads, head_dim]`` pool a layer.

The buffers live beside the ``KVCacheLike`` protocol the attention backends read them through; which slot holds
which token (the free list, the request-to-slots table) is the engine's business (``engine.kv_cache``).
"""
from __future__ import annotations

import torch


class KVCache:
    """The K and V buffers of every layer, ``[num_slots, num_kv_heads, head_dim]`` each.

    Parameters
    ----------
    num_layers, num_slots, num_kv_heads, head_dim:
        Shape of the pool; ``num_kv_heads`` is the number held by this tensor-parallel rank.
    dtype, device:
        Where and how the buffers live.
    """

    def __init__(self, *, num_layers: int, num_slots: int, num_kv_heads: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> None:
        shape = (num_slots, num_kv_heads, head_dim)
        self.num_slots = num_slots
        self.k_buffers = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.v_buffers = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]

    @staticmethod
    def bytes_per_slot(*, num_layers: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype) -> int:
        """Memory one token costs across all layers (K and V)."""
        return 2 * num_layers * num_kv_heads * head_dim * torch.empty((), dtype=dtype).element_size()

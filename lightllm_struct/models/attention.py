"""Attention over the token-level KV cache: the per-step metadata, the torch backend and the registry.

A backend writes the step's new K/V into their slots, then attends causally over each sequence's context,
which it gathers slot by slot through ``req_to_token`` (no contiguous per-request blocks exist).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from lightllm_struct.registry import Registry

# Decode rows whose contexts are all at most this long share one padded batch whatever their spread.
_SHORT_CONTEXT = 128


@dataclass
class AttentionMetadata:
    """Where the T tokens of one step (prefills and decodes mixed, flattened) sit in the KV cache.

    Sequence ``i`` owns tokens ``query_start_loc[i]:query_start_loc[i+1]`` of the step; they are the last
    ``query_lens_cpu[i]`` of its ``seq_lens_cpu[i]`` context positions, whose slots are
    ``req_to_token[i, :seq_lens[i]]``.

    A multi-token decode (``rows_per_seq = k > 1``) is a decode of one query row per new token: row ``i`` reads
    slot-table row ``i // k`` and its ``seq_lens[i]`` ends at its own token, which is the causal mask among a
    sequence's new tokens (a row of length 0 is padding and attends to nothing).
    """

    slot_mapping: torch.Tensor  # int64 [T]
    req_to_token: torch.Tensor  # int32/int64 [B, >= max_seq_len]
    seq_lens: torch.Tensor  # int32 [B]
    query_start_loc: torch.Tensor  # int32 [B + 1]
    seq_lens_cpu: list[int]
    query_lens_cpu: list[int]
    max_seq_len: int
    max_query_len: int
    rows_per_seq: int = 1

    @property
    def is_decode(self) -> bool:
        """Every sequence adds exactly one token this step."""
        return self.max_query_len == 1

    @property
    def num_seqs(self) -> int:
        return len(self.seq_lens_cpu)

    @classmethod
    def build(cls, seq_lens: list[int], query_lens: list[int], req_to_token: torch.Tensor,
              *, device: torch.device | str | None = None, slot_mapping: torch.Tensor | None = None) -> AttentionMetadata:
        """Derive every field from host lists and the ``[B, >= max(seq_lens)]`` slot table.

        The new tokens' slots (``slot_mapping``), unless given, are read from the table's last
        ``query_lens[i]`` entries of each row, so the table must already hold them.
        """
        device = device if device is not None else req_to_token.device
        starts = [0]
        for n in query_lens:
            starts.append(starts[-1] + n)
        if slot_mapping is None:
            slot_mapping = torch.cat([req_to_token[i, s - q:s] for i, (s, q) in enumerate(zip(seq_lens, query_lens))])
        return cls(
            slot_mapping=slot_mapping.to(device=device, dtype=torch.int64),
            req_to_token=req_to_token.to(device),
            seq_lens=torch.tensor(seq_lens, dtype=torch.int32, device=device),
            query_start_loc=torch.tensor(starts, dtype=torch.int32, device=device),
            seq_lens_cpu=list(seq_lens),
            query_lens_cpu=list(query_lens),
            max_seq_len=max(seq_lens),
            max_query_len=max(query_lens),
        )


class KVCacheLike(Protocol):
    """What a backend needs of the engine's KV cache: one ``[num_slots, kv_heads, head_dim]`` pool a layer."""

    k_buffers: list[torch.Tensor]
    v_buffers: list[torch.Tensor]


class AttentionBackend(Protocol):
    """``forward(q [T,Hq,D], k [T,Hkv,D], v [T,Hkv,D], *, layer, kv_cache, meta) -> [T,Hq,D]``.

    ``supports_cuda_graphs``: a decode step through it can be captured and replayed (no host synchronisation,
    no shape-dependent host logic inside ``forward``).
    """

    supports_cuda_graphs: bool

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, layer: int,
                kv_cache: KVCacheLike, meta: AttentionMetadata) -> torch.Tensor: ...


class TorchAttentionBackend:
    """Plain torch attention (the CPU path, and the reference for the GPU kernels).

    Decoding sequences run as one padded batch; prefill chunks loop over sequences so no query is padded
    to the longest prompt.

    Parameters
    ----------
    sliding_window:
        If set, a query attends only to the last ``sliding_window`` positions (itself included), as Mistral.
    """

    supports_cuda_graphs = False  # its decode gathers by host-side lengths (max_seq_len)

    def __init__(self, *, sliding_window: int | None = None) -> None:
        self.sliding_window = sliding_window

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, layer: int,
                kv_cache: KVCacheLike, meta: AttentionMetadata) -> torch.Tensor:
        k_buf, v_buf = kv_cache.k_buffers[layer], kv_cache.v_buffers[layer]
        k_buf.index_copy_(0, meta.slot_mapping, k.to(k_buf.dtype))
        v_buf.index_copy_(0, meta.slot_mapping, v.to(v_buf.dtype))
        if meta.is_decode:
            table = meta.req_to_token
            if meta.rows_per_seq > 1:
                table = table.repeat_interleave(meta.rows_per_seq, dim=0)[:q.shape[0]]
            return self._decode_grouped(q, k_buf, v_buf, table, meta.seq_lens[:q.shape[0]],
                                        meta.seq_lens_cpu[:q.shape[0]])
        return self._mixed(q, k_buf, v_buf, meta)

    def _decode_grouped(self, q, k_buf, v_buf, req_to_token, seq_lens, lens_cpu: list[int]) -> torch.Tensor:
        """Decode rows in groups of similar context length, each one padded batch: padding every row to the
        longest context made one long-context request cost each of its batch mates its whole context (17 rows
        beside one at 3,000 positions: a CPU step 0.4 -> 2-3.5 s, gathering every row's keys to 3,000)."""
        if len(lens_cpu) != q.shape[0]:  # host lengths not one a row: one batch, as before
            return self._decode(q, k_buf, v_buf, req_to_token, seq_lens, max(lens_cpu, default=1))
        groups, group = [], []
        for i in sorted(range(len(lens_cpu)), key=lens_cpu.__getitem__):
            # Within a group the longest is at most twice the shortest (or short anyway): padding at most doubles.
            if group and lens_cpu[i] > max(2 * lens_cpu[group[0]], _SHORT_CONTEXT):
                groups.append(group)
                group = []
            group.append(i)
        groups.append(group)
        if len(groups) == 1:
            return self._decode(q, k_buf, v_buf, req_to_token, seq_lens, max(lens_cpu, default=1))
        out = torch.empty_like(q)
        for group in groups:
            rows = torch.tensor(group, device=q.device)
            longest = max(max(lens_cpu[i] for i in group), 1)
            out[rows] = self._decode(q[rows], k_buf, v_buf, req_to_token[rows], seq_lens[rows], longest)
        return out

    def _decode(self, q, k_buf, v_buf, req_to_token, seq_lens, max_seq_len: int) -> torch.Tensor:
        """One padded batch: ``q [B, Hq, D]`` (one query a sequence, the last position of its context)."""
        pos = torch.arange(max_seq_len, device=q.device)
        lens = seq_lens[:, None].to(pos.dtype)
        valid = pos[None, :] < lens  # [B, L]
        if self.sliding_window is not None:
            valid &= pos[None, :] >= lens - self.sliding_window
        # Entries past a sequence's length may be stale; point them at slot 0 so the gather stays in range.
        idx = torch.where(valid, req_to_token[:, :max_seq_len].long(), 0)
        keys = k_buf[idx].transpose(1, 2)  # [B, Hkv, L, D]
        values = v_buf[idx].transpose(1, 2)
        out = F.scaled_dot_product_attention(
            q.unsqueeze(2), keys, values, attn_mask=valid[:, None, None, :], enable_gqa=True
        ).squeeze(2)
        # A row with no context (padding) would be NaN from an all-masked softmax: zeros, as the kernel gives.
        return torch.where(lens[:, :, None] > 0, out, 0.0)

    def _mixed(self, q, k_buf, v_buf, meta: AttentionMetadata) -> torch.Tensor:
        """Decoding sequences as one padded batch, prefill chunks one sequence at a time."""
        out = torch.empty_like(q)
        starts = [0]
        for n in meta.query_lens_cpu:
            starts.append(starts[-1] + n)
        decoding = [i for i, n in enumerate(meta.query_lens_cpu) if n == 1]
        if len(decoding) > 1:
            rows = torch.tensor(decoding, device=q.device)
            tokens = torch.tensor([starts[i] for i in decoding], device=q.device)
            out[tokens] = self._decode_grouped(q[tokens], k_buf, v_buf, meta.req_to_token[rows], meta.seq_lens[rows],
                                               [meta.seq_lens_cpu[i] for i in decoding])
        for i, (seq_len, q_len) in enumerate(zip(meta.seq_lens_cpu, meta.query_lens_cpu)):
            if len(decoding) > 1 and q_len == 1:
                continue
            span = slice(starts[i], starts[i] + q_len)
            out[span] = self._one_sequence(q[span], k_buf, v_buf, meta.req_to_token[i, :seq_len])
        return out

    def _one_sequence(self, q, k_buf, v_buf, slots) -> torch.Tensor:
        """``q [q_len, Hq, D]``: the last ``q_len`` positions of the context stored at ``slots``."""
        seq_len, q_len = slots.shape[0], q.shape[0]
        idx = slots.long()
        # 4-D [1, H, L, D]: on the CPU, SDPA takes its flash kernel only for 4-D inputs; 3-D ones fall back to
        # the math path, which materialises the [Hq, q_len, L] scores (4-8x slower on a long prefill chunk,
        # and hundreds of MB a layer at a context of thousands).
        keys = k_buf[idx].transpose(0, 1).unsqueeze(0)  # [1, Hkv, L, D]
        values = v_buf[idx].transpose(0, 1).unsqueeze(0)
        qt = q.transpose(0, 1).unsqueeze(0)  # [1, Hq, q_len, D]
        if q_len == seq_len and self.sliding_window is None:  # whole prompt: SDPA's own causal path
            out = F.scaled_dot_product_attention(qt, keys, values, is_causal=True, enable_gqa=True)
        else:
            mask = self._causal_mask(seq_len, q_len, q.device)
            out = F.scaled_dot_product_attention(qt, keys, values, attn_mask=mask, enable_gqa=True)
        return out[0].transpose(0, 1)

    def _causal_mask(self, seq_len: int, q_len: int, device) -> torch.Tensor:
        # Query j is context position seq_len - q_len + j: it sees every key at or before that position.
        q_pos = torch.arange(seq_len - q_len, seq_len, device=device)[:, None]
        k_pos = torch.arange(seq_len, device=device)[None, :]
        mask = k_pos <= q_pos
        if self.sliding_window is not None:
            mask &= k_pos > q_pos - self.sliding_window
        return mask


ATTENTION_BACKENDS: Registry[AttentionBackend] = Registry("attention backend")
ATTENTION_BACKENDS.register("torch")(TorchAttentionBackend)


@ATTENTION_BACKENDS.register("triton")
def _triton_backend(**options) -> AttentionBackend:
    # Imported on choice: the Triton backend imports Triton, which a CPU-only machine may lack.
    from lightllm_struct.models.attention_triton import TritonAttentionBackend

    return TritonAttentionBackend(**options)


def create_attention_backend(name: str = "auto", *, device: torch.device | str = "cpu",
                             sliding_window: int | None = None) -> AttentionBackend:
    """Instantiate the attention backend ``name``; ``"auto"`` is Triton on CUDA and torch elsewhere.

    Raises
    ------
    UnknownChoiceError
        For an unknown name (the message lists the supported ones).
    """
    if name == "auto":
        if torch.device(device).type == "cuda":
            try:
                return ATTENTION_BACKENDS.get("triton", sliding_window=sliding_window)
            except ImportError:  # no GPU kernels installed: torch still works on CUDA
                pass
        name = "torch"
    return ATTENTION_BACKENDS.get(name, sliding_window=sliding_window)

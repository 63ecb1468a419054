"""Tensor-parallel building blocks of a Llama-family decoder.

Every layer owns only its rank's shard and fills it from a :class:`WeightSource` that reads slices, so no
rank ever materialises a full weight. With ``TensorParallel`` size 1 the shards are the whole weights and
nothing communicates.

Sharding (rank r of n):
- q/k/v (merged): split by heads. With fewer KV heads than ranks each KV head is replicated on
  ``n // num_kv_heads`` consecutive ranks, so every rank still holds one KV head for its query heads.
- gate/up (merged): split by output columns; o and down: split by input rows, one all-reduce each.
- embedding and LM head: split by vocabulary rows (padded to a multiple of n); logits gathered once.
"""
from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from lightllm_struct.models.parallel import SINGLE, TensorParallel
from lightllm_struct.models.config import RopeScaling
from lightllm_struct.models.errors import ModelLoadError
from lightllm_struct.models.ops import TORCH_OPS, LayerOps


class WeightSource(Protocol):
    """Reads (a slice of) a named checkpoint tensor without loading the rest."""

    def read(self, name: str, *, dim: int = 0, start: int | None = None, end: int | None = None) -> torch.Tensor:
        """Rows (``dim=0``) or columns (``dim=1``) ``[start, end)`` of ``name``; the whole tensor by default."""
        ...

    def has(self, name: str) -> bool:
        """Whether the checkpoint holds ``name``."""
        ...


def _param(shape: tuple[int, ...], device, dtype) -> nn.Parameter:
    # Uninitialised: every parameter is overwritten by load(); random init would only cost time.
    return nn.Parameter(torch.empty(shape, device=device, dtype=dtype), requires_grad=False)


def _copy(dst: torch.Tensor, src: torch.Tensor, name: str) -> None:
    if tuple(dst.shape) != tuple(src.shape):
        raise ModelLoadError(f"{name}: expected shape {tuple(dst.shape)}, checkpoint has {tuple(src.shape)}")
    dst.copy_(src)


def _copy_stacked(dst: torch.Tensor, parts: list[torch.Tensor], name: str) -> None:
    """Copy ``parts`` one after another along dim 0 of ``dst`` (no concatenated temporary: loading is
    memory-bound, and a second full pass over every merged weight doubled its time)."""
    if sum(p.shape[0] for p in parts) != dst.shape[0]:
        raise ModelLoadError(f"{name}: expected {dst.shape[0]} rows, checkpoint parts have {[p.shape[0] for p in parts]}")
    row = 0
    for part in parts:
        _copy(dst[row:row + part.shape[0]], part, name)
        row += part.shape[0]


class RMSNorm(nn.Module):
    """Root-mean-square norm (replicated on every rank)."""

    def __init__(self, size: int, eps: float, *, ops: LayerOps = TORCH_OPS, device=None, dtype=None) -> None:
        super().__init__()
        self.eps, self.ops = eps, ops
        self.weight = _param((size,), device, dtype)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        """``norm(x)``, or with ``residual`` given ``(norm(x + residual), x + residual)``."""
        if residual is None:
            return self.ops.rms_norm(x, self.weight, self.eps)
        return self.ops.add_rms_norm(x, residual, self.weight, self.eps)

    def load(self, src: WeightSource, prefix: str) -> None:
        _copy(self.weight.data, src.read(f"{prefix}.weight"), prefix)


def rope_inv_freq(head_dim: int, theta: float, scaling: RopeScaling | None) -> torch.Tensor:
    """Per-pair inverse frequencies (fp32 ``[head_dim/2]``), with linear or Llama 3 scaling applied."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if scaling is None:
        return inv_freq
    if scaling.rope_type == "linear":
        return inv_freq / scaling.factor
    # Llama 3: long wavelengths slowed by `factor`, short ones kept, a smooth ramp in between.
    old_len = scaling.original_max_position_embeddings
    low_wavelen = old_len / scaling.low_freq_factor
    high_wavelen = old_len / scaling.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
    smooth = (old_len / wavelen - scaling.low_freq_factor) / (scaling.high_freq_factor - scaling.low_freq_factor)
    smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    is_medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(is_medium, smoothed, scaled)


class RotaryEmbedding(nn.Module):
    """cos/sin tables for RoPE, grown on demand (doubling) to the longest position seen."""

    def __init__(self, head_dim: int, theta: float, scaling: RopeScaling | None, *, device=None) -> None:
        super().__init__()
        self.register_buffer("inv_freq", rope_inv_freq(head_dim, theta, scaling).to(device), persistent=False)
        self.register_buffer("cos_cache", torch.empty(0, head_dim // 2, device=device), persistent=False)
        self.register_buffer("sin_cache", torch.empty(0, head_dim // 2, device=device), persistent=False)

    def forward(self, positions: torch.Tensor, max_position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """fp32 ``(cos, sin)``, each ``[T, head_dim/2]``; ``max_position`` bounds ``positions`` (host value,
        so the table can grow without reading the device)."""
        self.reserve(max_position)
        return self.cos_cache[positions], self.sin_cache[positions]

    def reserve(self, max_position: int) -> None:
        """Make the tables cover positions ``< max_position`` now (e.g. before capturing a CUDA graph,
        so no replay ever needs them to grow)."""
        if max_position <= self.cos_cache.shape[0]:
            return
        length = max(max_position, 2 * self.cos_cache.shape[0], 256)
        t = torch.arange(length, device=self.inv_freq.device, dtype=torch.float32)
        freqs = torch.outer(t, self.inv_freq)
        self.cos_cache, self.sin_cache = freqs.cos(), freqs.sin()


def kv_head_range(num_kv_heads: int, tp: TensorParallel) -> tuple[int, int]:
    """The KV heads ``[start, end)`` rank ``tp.rank`` holds (one replicated head when heads < ranks).

    With at least one KV head per rank the split is balanced, not necessarily even (3 heads over 2 ranks
    is 2 + 1), so models whose head counts the TP size does not divide still shard.
    """
    if num_kv_heads >= tp.size:
        return tp.shard_balanced(num_kv_heads)
    if tp.size % num_kv_heads:
        raise ValueError(f"tensor-parallel size {tp.size} must be a multiple of num_kv_heads {num_kv_heads}")
    head = tp.rank // (tp.size // num_kv_heads)
    return head, head + 1


def q_head_range(num_heads: int, num_kv_heads: int, tp: TensorParallel) -> tuple[int, int]:
    """The query heads ``[start, end)`` of rank ``tp.rank``: those of its KV heads (a GQA group never straddles
    ranks), or an even share when KV heads are replicated."""
    if num_kv_heads >= tp.size:
        group = num_heads // num_kv_heads
        start, end = kv_head_range(num_kv_heads, tp)
        return start * group, end * group
    return tp.shard(num_heads)


class QKVParallelLinear(nn.Module):
    """q, k and v projections in one column-parallel matmul over this rank's heads."""

    def __init__(self, hidden: int, head_dim: int, num_heads: int, num_kv_heads: int, *, bias: bool,
                 tp: TensorParallel = SINGLE, device=None, dtype=None) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.q_heads = q_head_range(num_heads, num_kv_heads, tp)
        self.kv_heads = kv_head_range(num_kv_heads, tp)
        self.num_heads = self.q_heads[1] - self.q_heads[0]
        self.num_kv_heads = self.kv_heads[1] - self.kv_heads[0]
        rows = (self.num_heads + 2 * self.num_kv_heads) * head_dim
        self.weight = _param((rows, hidden), device, dtype)
        self.bias = _param((rows,), device, dtype) if bias else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x [T, hidden]`` -> ``q [T, Hq, D]``, ``k [T, Hkv, D]``, ``v [T, Hkv, D]`` (local heads)."""
        qkv = F.linear(x, self.weight, self.bias)
        d = self.head_dim
        q, k, v = qkv.split([self.num_heads * d, self.num_kv_heads * d, self.num_kv_heads * d], dim=-1)
        return q.view(-1, self.num_heads, d), k.view(-1, self.num_kv_heads, d), v.view(-1, self.num_kv_heads, d)

    def load(self, src: WeightSource, prefix: str) -> None:
        d = self.head_dim
        spans = {"q_proj": self.q_heads, "k_proj": self.kv_heads, "v_proj": self.kv_heads}
        kinds = ["weight"] + (["bias"] if self.bias is not None else [])
        for kind in kinds:
            parts = [src.read(f"{prefix}.{n}.{kind}", start=a * d, end=b * d) for n, (a, b) in spans.items()]
            _copy_stacked(getattr(self, kind).data, parts, f"{prefix}.qkv.{kind}")


class GateUpParallelLinear(nn.Module):
    """gate and up projections in one column-parallel matmul; output ``[T, 2 * intermediate/n]``."""

    def __init__(self, hidden: int, intermediate: int, *, tp: TensorParallel = SINGLE, device=None,
                 dtype=None) -> None:
        super().__init__()
        self.cols = tp.shard(intermediate)
        self.weight = _param((2 * (self.cols[1] - self.cols[0]), hidden), device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)

    def load(self, src: WeightSource, prefix: str) -> None:
        a, b = self.cols
        parts = [src.read(f"{prefix}.{n}.weight", start=a, end=b) for n in ("gate_proj", "up_proj")]
        _copy_stacked(self.weight.data, parts, f"{prefix}.gate_up")


class RowParallelLinear(nn.Module):
    """``y = x W^T (+ b)`` with ``W``'s input columns split across ranks; one all-reduce sums the parts."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool = False,
                 tp: TensorParallel = SINGLE, cols: tuple[int, int] | None = None, device=None,
                 dtype=None) -> None:
        super().__init__()
        self.tp = tp
        # `cols` lets o_proj follow an uneven head split; otherwise the inputs split evenly.
        self.cols = cols if cols is not None else tp.shard(in_features)
        self.weight = _param((out_features, self.cols[1] - self.cols[0]), device, dtype)
        self.bias = _param((out_features,), device, dtype) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tp.all_reduce(F.linear(x, self.weight))
        # The bias joins after the reduction so it is counted once, not once per rank.
        return y if self.bias is None else y + self.bias

    def load(self, src: WeightSource, prefix: str) -> None:
        a, b = self.cols
        _copy(self.weight.data, src.read(f"{prefix}.weight", dim=1, start=a, end=b), prefix)
        if self.bias is not None:
            _copy(self.bias.data, src.read(f"{prefix}.bias"), f"{prefix}.bias")


def vocab_range(vocab_size: int, tp: TensorParallel) -> tuple[int, int, int]:
    """``(start, end, rows)``: this rank's vocabulary rows; ``rows`` includes padding past ``vocab_size``."""
    rows = -(-vocab_size // tp.size)
    start = tp.rank * rows
    return min(start, vocab_size), min(start + rows, vocab_size), rows


def _load_vocab_rows(dst: torch.Tensor, src: WeightSource, name: str, vocab_size: int, tp: TensorParallel) -> None:
    start, end, _ = vocab_range(vocab_size, tp)
    _copy(dst[:end - start], src.read(name, start=start, end=end), name)
    dst[end - start:].zero_()  # the last rank's padding rows: never looked up, logits cut off after gather


class VocabParallelEmbedding(nn.Module):
    """Token embedding split by vocabulary rows; each rank embeds its own ids, an all-reduce merges."""

    def __init__(self, vocab_size: int, hidden: int, *, tp: TensorParallel = SINGLE, device=None,
                 dtype=None) -> None:
        super().__init__()
        self.tp, self.vocab_size = tp, vocab_size
        self.start, self.end, rows = vocab_range(vocab_size, tp)
        self.weight = _param((rows, hidden), device, dtype)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.tp.size == 1:
            return F.embedding(ids, self.weight)
        mine = (ids >= self.start) & (ids < self.end)
        out = F.embedding(torch.where(mine, ids - self.start, 0), self.weight)
        out = out * mine.unsqueeze(-1).to(out.dtype)
        return self.tp.all_reduce(out)

    def load(self, src: WeightSource, prefix: str) -> None:
        _load_vocab_rows(self.weight.data, src, f"{prefix}.weight", self.vocab_size, self.tp)


class ParallelLMHead(nn.Module):
    """Output projection split by vocabulary rows; logits of all ranks gathered once (fp32, full vocab).

    With ``tied`` set the weight is the embedding's (same row split), and ``load`` reads nothing.
    """

    def __init__(self, vocab_size: int, hidden: int, *, tp: TensorParallel = SINGLE,
                 tied: VocabParallelEmbedding | None = None, device=None, dtype=None) -> None:
        super().__init__()
        self.tp, self.vocab_size = tp, vocab_size
        self.tied = tied is not None
        rows = vocab_range(vocab_size, tp)[2]
        self.weight = tied.weight if tied is not None else _param((rows, hidden), device, dtype)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = F.linear(hidden, self.weight).float()
        if self.tp.size > 1:
            logits = self.tp.all_gather(logits, dim=-1)
        return logits[..., : self.vocab_size]

    def load(self, src: WeightSource, prefix: str) -> None:
        if not self.tied:
            _load_vocab_rows(self.weight.data, src, f"{prefix}.weight", self.vocab_size, self.tp)

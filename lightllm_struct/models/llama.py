"""The Llama-family decoder (Llama 2/3, SmolLM2, Mistral, Qwen2) over a token-level KV cache.

``forward`` takes one flattened step of T tokens (any mix of prefill chunks and decodes) and returns hidden
states; ``compute_logits`` projects only the rows the caller samples from. Weight names follow HF.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from lightllm_struct.models.parallel import SINGLE, TensorParallel
from lightllm_struct.models.attention import AttentionMetadata, KVCacheLike, create_attention_backend
from lightllm_struct.models.config import ModelConfig
from lightllm_struct.models.layers import (
    GateUpParallelLinear,
    ParallelLMHead,
    QKVParallelLinear,
    RMSNorm,
    RotaryEmbedding,
    RowParallelLinear,
    VocabParallelEmbedding,
    WeightSource,
)
from lightllm_struct.models.ops import TORCH_OPS, LayerOps


class LlamaAttention(nn.Module):
    """Self-attention over this rank's heads; K/V go through the attention backend into the cache."""

    def __init__(self, config: ModelConfig, layer: int, *, tp: TensorParallel, ops: LayerOps,
                 device=None, dtype=None) -> None:
        super().__init__()
        self.layer, self.ops = layer, ops
        self.qkv_proj = QKVParallelLinear(
            config.hidden_size, config.head_dim, config.num_heads, config.num_kv_heads,
            bias=config.attention_bias, tp=tp, device=device, dtype=dtype,
        )
        q_start, q_end = self.qkv_proj.q_heads
        self.o_proj = RowParallelLinear(
            config.num_heads * config.head_dim, config.hidden_size, bias=config.o_proj_bias, tp=tp,
            cols=(q_start * config.head_dim, q_end * config.head_dim), device=device, dtype=dtype,
        )

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, meta: AttentionMetadata,
                kv_cache: KVCacheLike, backend) -> torch.Tensor:
        q, k, v = self.qkv_proj(x)
        q, k = self.ops.apply_rotary(q, k, cos, sin)
        out = backend.forward(q, k, v, layer=self.layer, kv_cache=kv_cache, meta=meta)
        return self.o_proj(out.reshape(out.shape[0], -1))

    def load(self, src: WeightSource, prefix: str) -> None:
        self.qkv_proj.load(src, prefix)
        self.o_proj.load(src, f"{prefix}.o_proj")


class LlamaMLP(nn.Module):
    """SwiGLU feed-forward: column-parallel gate/up, row-parallel down."""

    def __init__(self, config: ModelConfig, *, tp: TensorParallel, ops: LayerOps, device=None,
                 dtype=None) -> None:
        super().__init__()
        self.ops = ops
        self.gate_up_proj = GateUpParallelLinear(
            config.hidden_size, config.intermediate_size, tp=tp, device=device, dtype=dtype
        )
        self.down_proj = RowParallelLinear(
            config.intermediate_size, config.hidden_size, tp=tp, device=device, dtype=dtype
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.ops.silu_and_mul(self.gate_up_proj(x)))

    def load(self, src: WeightSource, prefix: str) -> None:
        self.gate_up_proj.load(src, prefix)
        self.down_proj.load(src, f"{prefix}.down_proj")


class LlamaDecoderLayer(nn.Module):
    """Pre-norm block; the residual stream is carried separately so norms can fuse the residual add."""

    def __init__(self, config: ModelConfig, layer: int, *, tp: TensorParallel, ops: LayerOps,
                 device=None, dtype=None) -> None:
        super().__init__()
        kw = dict(ops=ops, device=device, dtype=dtype)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, **kw)
        self.self_attn = LlamaAttention(config, layer, tp=tp, **kw)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, **kw)
        self.mlp = LlamaMLP(config, tp=tp, **kw)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor,
                **attn_kw) -> tuple[torch.Tensor, torch.Tensor]:
        if residual is None:
            residual, h = x, self.input_layernorm(x)
        else:
            h, residual = self.input_layernorm(x, residual)
        h = self.self_attn(h, cos, sin, **attn_kw)
        h, residual = self.post_attention_layernorm(h, residual)
        return self.mlp(h), residual

    def load(self, src: WeightSource, prefix: str) -> None:
        self.input_layernorm.load(src, f"{prefix}.input_layernorm")
        self.self_attn.load(src, f"{prefix}.self_attn")
        self.post_attention_layernorm.load(src, f"{prefix}.post_attention_layernorm")
        self.mlp.load(src, f"{prefix}.mlp")


class LlamaForCausalLM(nn.Module):
    """A Llama-family causal LM, sharded over ``tp`` (``None`` = one device, no communication).

    Parameters
    ----------
    config:
        The model's shape.
    tp:
        This rank's tensor-parallel context.
    ops:
        Norm / rotary / activation implementations (default: plain torch).
    attn_backend:
        Name for :func:`create_attention_backend` (``"auto"``, ``"torch"``, ``"triton"``).
    device, dtype:
        Where and in what precision the (uninitialised) parameters are allocated.
    """

    def __init__(self, config: ModelConfig, *, tp: TensorParallel | None = None, ops: LayerOps = TORCH_OPS,
                 attn_backend: str = "auto", device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.config, self.tp = config, tp or SINGLE
        kw = dict(device=device, dtype=dtype)
        self.embed_tokens = VocabParallelEmbedding(config.vocab_size, config.hidden_size, tp=self.tp, **kw)
        self.layers = nn.ModuleList(
            LlamaDecoderLayer(config, i, tp=self.tp, ops=ops, **kw) for i in range(config.num_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, ops=ops, **kw)
        tied = self.embed_tokens if config.tie_word_embeddings else None
        self.lm_head = ParallelLMHead(config.vocab_size, config.hidden_size, tp=self.tp, tied=tied, **kw)
        self.rotary = RotaryEmbedding(config.head_dim, config.rope_theta, config.rope_scaling, device=device)
        self.attn_backend = create_attention_backend(
            attn_backend, device=device or "cpu", sliding_window=config.sliding_window
        )

    @property
    def num_kv_heads_local(self) -> int:
        """KV heads this rank stores per layer: the KV cache's second dimension."""
        return self.layers[0].self_attn.qkv_proj.num_kv_heads

    def kv_cache_shape(self, num_slots: int) -> tuple[int, int, int]:
        """Shape of one layer's K (or V) pool on this rank: ``[num_slots, kv_heads_local, head_dim]``."""
        return num_slots, self.num_kv_heads_local, self.config.head_dim

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, *, meta: AttentionMetadata,
                kv_cache: KVCacheLike, attn_backend=None) -> torch.Tensor:
        """Run one step over ``input_ids [T]`` at ``positions [T]``; returns final hidden states ``[T, H]``."""
        backend = attn_backend if attn_backend is not None else self.attn_backend
        cos, sin = self.rotary(positions, meta.max_seq_len)
        h, residual = self.embed_tokens(input_ids), None
        for layer in self.layers:
            h, residual = layer(h, residual, cos, sin, meta=meta, kv_cache=kv_cache, backend=backend)
        return self.norm(h, residual)[0]

    @torch.inference_mode()
    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """fp32 logits ``[N, vocab_size]`` over the full vocabulary (gathered across ranks)."""
        return self.lm_head(hidden)

    def load_weights(self, src: WeightSource) -> None:
        """Fill every parameter with this rank's shard of the HF-named checkpoint ``src``."""
        self.embed_tokens.load(src, "model.embed_tokens")
        for i, layer in enumerate(self.layers):
            layer.load(src, f"model.layers.{i}")
        self.norm.load(src, "model.norm")
        self.lm_head.load(src, "lm_head")

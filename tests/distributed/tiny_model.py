"""Tiny random-weight Llama-family checkpoints (HF layout: config.json + model.safetensors) for TP tests."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file


def write_tiny_llama(path: Path, *, num_heads: int = 4, num_kv_heads: int = 4, hidden: int = 64,
                     intermediate: int = 96, num_layers: int = 2, vocab: int = 301, tie: bool = False,
                     architecture: str = "LlamaForCausalLM", seed: int = 0) -> Path:
    """Write a checkpoint; ``vocab`` odd on purpose so the last rank's vocabulary shard is padded."""
    head_dim = hidden // num_heads
    qkv_bias = architecture == "Qwen2ForCausalLM"
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, std=0.08):
        return torch.randn(*shape, generator=gen) * std

    def norm():
        return 1.0 + rnd(hidden, std=0.1)

    w = {"model.embed_tokens.weight": rnd(vocab, hidden, std=0.5), "model.norm.weight": norm()}
    for i in range(num_layers):
        p = f"model.layers.{i}"
        w[f"{p}.input_layernorm.weight"] = norm()
        w[f"{p}.post_attention_layernorm.weight"] = norm()
        for name, rows in (("q_proj", num_heads), ("k_proj", num_kv_heads), ("v_proj", num_kv_heads)):
            w[f"{p}.self_attn.{name}.weight"] = rnd(rows * head_dim, hidden)
            if qkv_bias:
                w[f"{p}.self_attn.{name}.bias"] = rnd(rows * head_dim)
        w[f"{p}.self_attn.o_proj.weight"] = rnd(hidden, num_heads * head_dim)
        w[f"{p}.mlp.gate_proj.weight"] = rnd(intermediate, hidden)
        w[f"{p}.mlp.up_proj.weight"] = rnd(intermediate, hidden)
        w[f"{p}.mlp.down_proj.weight"] = rnd(hidden, intermediate)
    if not tie:
        w["lm_head.weight"] = rnd(vocab, hidden, std=0.3)
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in w.items()}, str(path / "model.safetensors"))
    config = {
        "architectures": [architecture], "model_type": "qwen2" if qkv_bias else "llama",
        "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": intermediate,
        "num_hidden_layers": num_layers, "num_attention_heads": num_heads, "num_key_value_heads": num_kv_heads,
        "head_dim": head_dim, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
        "tie_word_embeddings": tie, "max_position_embeddings": 512, "bos_token_id": 1, "eos_token_id": 2,
    }
    (path / "config.json").write_text(json.dumps(config))
    return path

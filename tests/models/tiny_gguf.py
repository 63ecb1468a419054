"""Writes a tiny Llama GGUF file the way llama.cpp would: q/k rows permuted, mixed quantization types."""
from __future__ import annotations

from pathlib import Path

import numpy as np

HIDDEN, HEADS, KV_HEADS, INTER, LAYERS = 256, 4, 2, 512, 2
HEAD_DIM = HIDDEN // HEADS
CHAT_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"


def _tokens() -> list[str]:
    # GPT-2 byte-level symbols of printable ASCII (space is 'Ġ'), one merge, three specials.
    chars = ["Ġ" if c == " " else c for c in map(chr, range(32, 127))]
    return chars + ["th", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def llama_cpp_permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows (HF half-split -> interleaved pairs)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _k_quant_bytes(rng, rows: int, cols: int, qtype) -> np.ndarray:
    """Random but finite K-quant blocks (gguf can dequantize these types, not quantize them)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    block, size = GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(rows * cols // block, size), dtype=np.uint8)
    scale = np.full((blocks.shape[0], 1), 0.0004, dtype=np.float16).view(np.uint8)
    if qtype == GGMLQuantizationType.Q4_K:  # d and dmin lead the block
        blocks[:, 0:2], blocks[:, 2:4] = scale, scale
    else:  # Q6_K: d ends the block
        blocks[:, -2:] = scale
    return blocks.reshape(rows, -1)


def _tensor(rng, shape, qtype, *, permute_heads: int = 0):
    from gguf import GGMLQuantizationType as Q, quantize

    if qtype in (Q.Q4_K, Q.Q6_K):
        return _k_quant_bytes(rng, shape[0], shape[1], qtype)
    w = rng.normal(0, 0.08, size=shape).astype(np.float32)
    if permute_heads:
        w = llama_cpp_permute(w, permute_heads)
    if qtype == Q.F32:
        return w
    if qtype == Q.F16:
        return w.astype(np.float16)
    return quantize(w, qtype)


def write_tiny_gguf(path: Path, *, arch: str = "llama", seed: int = 0, rope_freqs: np.ndarray | None = None) -> Path:
    """A 2-layer GQA-2 model (vocab 99) with F32/F16/BF16/Q8_0/Q4_0/Q4_1/Q4_K/Q6_K tensors.

    ``arch="llama"``: untied, q/k permuted as llama.cpp does. ``arch="qwen2"``: tied, q/k/v biases, no
    permutation (llama.cpp permutes only llama). ``rope_freqs``: a ``rope_freqs.weight`` tensor, as Llama 3.x
    GGUFs carry their RoPE scaling.
    """
    from gguf import GGMLQuantizationType as Q, GGUFWriter

    rng = np.random.default_rng(seed)
    tokens = _tokens()
    llama = arch == "llama"
    writer = GGUFWriter(str(path), arch)
    writer.add_name(f"tiny-{arch}")
    for method, value in [("add_block_count", LAYERS), ("add_context_length", 256), ("add_embedding_length", HIDDEN),
                          ("add_feed_forward_length", INTER), ("add_head_count", HEADS),
                          ("add_head_count_kv", KV_HEADS), ("add_rope_freq_base", 500000.0 if llama else 10000.0),
                          ("add_layer_norm_rms_eps", 1e-5), ("add_rope_dimension_count", HEAD_DIM),
                          ("add_vocab_size", len(tokens)), ("add_tokenizer_model", "gpt2"),
                          ("add_token_list", tokens), ("add_token_merges", ["t h"]),
                          ("add_token_types", [1] * 96 + [3] * 3), ("add_bos_token_id", 97),
                          ("add_eos_token_id", 98), ("add_chat_template", CHAT_TEMPLATE)]:
        getattr(writer, method)(value)
    norm = lambda: (1 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32)  # noqa: E731
    writer.add_tensor("token_embd.weight", _tensor(rng, (len(tokens), HIDDEN), Q.Q8_0), raw_dtype=Q.Q8_0)
    per_layer = [("attn_q", (HIDDEN, HIDDEN), Q.Q4_0, HEADS * llama),
                 ("attn_k", (KV_HEADS * HEAD_DIM, HIDDEN), Q.Q4_1, KV_HEADS * llama),
                 ("attn_v", (KV_HEADS * HEAD_DIM, HIDDEN), Q.F16, 0), ("attn_output", (HIDDEN, HIDDEN), Q.BF16, 0),
                 ("ffn_gate", (INTER, HIDDEN), Q.Q4_K, 0), ("ffn_up", (INTER, HIDDEN), Q.Q6_K, 0),
                 ("ffn_down", (HIDDEN, INTER), Q.Q8_0, 0)]
    for i in range(LAYERS):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", norm())
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", norm())
        for name, shape, qtype, heads in per_layer:
            data = _tensor(rng, shape, qtype, permute_heads=heads)
            writer.add_tensor(f"blk.{i}.{name}.weight", data, raw_dtype=None if qtype in (Q.F32, Q.F16) else qtype)
            if not llama and name in ("attn_q", "attn_k", "attn_v"):
                writer.add_tensor(f"blk.{i}.{name}.bias", rng.normal(0, 0.1, size=shape[0]).astype(np.float32))
    writer.add_tensor("output_norm.weight", norm())
    if llama:
        writer.add_tensor("output.weight", _tensor(rng, (len(tokens), HIDDEN), Q.Q6_K), raw_dtype=Q.Q6_K)
    if rope_freqs is not None:
        writer.add_tensor("rope_freqs.weight", rope_freqs.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path

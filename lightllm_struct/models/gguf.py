"""One-time conversion of a GGUF file into an HF-format safetensors folder in a cache directory.

Weights are dequantized with the ``gguf`` package (F32/F16/BF16 and every quant type it knows: Q8_0, Q4_0,
Q4_1, Q4_K, Q6_K, ...), llama.cpp's q/k rotary permutation is undone, and names are mapped to HF's. The
config and tokenizer come from transformers' own GGUF reader. The folder is written under a temporary name
and renamed into place, so a crash or a concurrent converter never leaves a half-written cache entry.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from lightllm_struct.models.errors import ModelLoadError, UnsupportedArchitecture

CONVERTER_VERSION = 1  # bump when the output layout changes, so old cache entries are not reused
_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GLOBAL_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}
SHARD_BYTES = 2 << 30  # fp32 bytes per converted safetensors file
_IGNORED = {"rope_freqs"}  # per-frequency RoPE divisors: turned back into config.json's Llama 3 rope scaling
# (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings) of released Llama 3.x models.
_LLAMA3_SCALINGS = [(8.0, 1.0, 4.0, 8192), (32.0, 1.0, 4.0, 8192), (16.0, 1.0, 4.0, 8192)]


def default_cache_root() -> Path:
    """``$LLMS_CACHE_DIR``, else ``~/.cache/lightllm_struct``."""
    return Path(os.environ.get("LLMS_CACHE_DIR") or Path.home() / ".cache" / "lightllm_struct")


def cache_dir_for(gguf_path: Path, cache_root: Path | None = None) -> Path:
    """The cache folder of ``gguf_path``: its name plus a digest of (size, mtime, converter version)."""
    st = gguf_path.stat()
    key = f"{st.st_size}:{st.st_mtime_ns}:{CONVERTER_VERSION}".encode()
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", gguf_path.stem)
    return (cache_root or default_cache_root()) / f"{stem}-{hashlib.sha256(key).hexdigest()[:16]}"


def ensure_converted(gguf_path: str | Path, *, cache_root: Path | None = None) -> Path:
    """Return the HF folder converted from ``gguf_path``, converting first if the cache lacks it.

    Raises
    ------
    ModelLoadError
        If the file cannot be read.
    UnsupportedArchitecture
        If the GGUF's architecture is not in the Llama family.
    """
    gguf_path = Path(gguf_path).resolve()
    if not gguf_path.is_file():
        raise ModelLoadError(f"GGUF file not found: {gguf_path}")
    target = cache_dir_for(gguf_path, cache_root)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        convert_gguf(gguf_path, tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache entry is a plain shared folder
        os.rename(tmp, target)
    except OSError:
        if not (target / "config.json").is_file():  # not a lost race with another converter
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Write config.json, model.safetensors (fp32) and the tokenizer files for ``gguf_path`` into ``out_dir``."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(gguf_path)
    except Exception as exc:  # gguf raises plain ValueError/struct errors on corrupt files
        raise ModelLoadError(f"cannot read GGUF file {gguf_path}: {exc}") from exc
    hf_config = _write_config(gguf_path, out_dir)
    _apply_rope_freqs(reader, hf_config, out_dir / "config.json")
    _write_tokenizer(gguf_path, reader, out_dir)
    _write_weights(reader, hf_config, out_dir)


def _write_config(gguf_path: Path, out_dir: Path) -> dict:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    except ValueError as exc:  # transformers' "GGUF model with architecture X is not supported"
        raise UnsupportedArchitecture(f"{gguf_path.name}: {exc}") from exc
    if config.model_type not in _ARCHITECTURES:
        raise UnsupportedArchitecture(
            f"GGUF architecture {config.model_type!r} is not supported; supported: {', '.join(_ARCHITECTURES)}"
        )
    config.architectures = [_ARCHITECTURES[config.model_type]]
    config.save_pretrained(out_dir)
    return json.loads((out_dir / "config.json").read_text())


def _write_tokenizer(gguf_path: Path, reader, out_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    tokenizer.save_pretrained(out_dir)
    # transformers 5 keeps the template in chat_template.jinja; readers of tokenizer_config.json expect it inline.
    field = reader.fields.get("tokenizer.chat_template")
    template = field.contents() if field is not None else getattr(tokenizer, "chat_template", None)
    if template:
        path = out_dir / "tokenizer_config.json"
        tok_config = json.loads(path.read_text())
        tok_config["chat_template"] = template
        path.write_text(json.dumps(tok_config, indent=2, ensure_ascii=False) + "\n")


def _apply_rope_freqs(reader, hf_config: dict, config_path: Path) -> None:
    """Llama 3.x GGUFs carry their RoPE scaling only as the ``rope_freqs`` tensor (transformers' reader drops
    it); recognise which Llama 3 scaling produced it and record that in config.json."""
    from gguf import dequantize

    from lightllm_struct.models.config import RopeScaling
    from lightllm_struct.models.layers import rope_inv_freq

    tensor = next((t for t in reader.tensors if t.name == "rope_freqs.weight"), None)
    if tensor is None:
        return
    divisors = torch.from_numpy(np.array(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32))
    params = dict(hf_config.get("rope_parameters") or {})
    theta = float(params.get("rope_theta", hf_config.get("rope_theta", 10000.0)))
    head_dim = hf_config.get("head_dim") or hf_config["hidden_size"] // hf_config["num_attention_heads"]
    plain = rope_inv_freq(head_dim, theta, None)
    for factor, low, high, original in _LLAMA3_SCALINGS:
        scaling = RopeScaling("llama3", factor, low, high, original)
        if torch.allclose(plain / rope_inv_freq(head_dim, theta, scaling), divisors.reshape(-1), rtol=1e-3):
            hf_config["rope_parameters"] = {"rope_type": "llama3", "rope_theta": theta, "factor": factor,
                                            "low_freq_factor": low, "high_freq_factor": high,
                                            "original_max_position_embeddings": original}
            hf_config.pop("rope_scaling", None)
            config_path.write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
            return
    raise UnsupportedArchitecture("rope_freqs tensor matches no known Llama 3 RoPE scaling")


def hf_tensor_name(gguf_name: str) -> str | None:
    """HF name of a GGUF tensor (``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight``);
    ``None`` for tensors the HF layout has no place for."""
    base, _, kind = gguf_name.rpartition(".")
    if base in _GLOBAL_NAMES:
        return f"{_GLOBAL_NAMES[base]}.{kind}"
    match = re.fullmatch(r"blk\.(\d+)\.(\w+)", base)
    if match and match.group(2) in _LAYER_NAMES:
        return f"model.layers.{match.group(1)}.{_LAYER_NAMES[match.group(2)]}.{kind}"
    if base in _IGNORED:
        return None
    raise UnsupportedArchitecture(f"unexpected GGUF tensor {gguf_name!r} for a Llama-family model")


def unpermute_qk(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """Undo llama.cpp's convert-time permutation of q/k rows (interleaved rotary pairs -> HF half split)."""
    half = weight.shape[0] // num_heads // 2
    w = weight.reshape(num_heads, half, 2, *weight.shape[1:])
    return w.swapaxes(2, 1).reshape(weight.shape)


def _write_weights(reader, hf_config: dict, out_dir: Path) -> None:
    """Dequantize into fp32 safetensors: ``model.safetensors``, or shards plus an index past ``shard_bytes``
    (so converting a big model holds one shard in memory, not the whole model)."""
    from safetensors.torch import save_file

    plan = _shard_plan(reader, SHARD_BYTES)
    names = ["model.safetensors"] if len(plan) == 1 else [
        f"model-{i + 1:05d}-of-{len(plan):05d}.safetensors" for i in range(len(plan))
    ]
    weight_map = {}
    for file_name, group in zip(names, plan):
        tensors = {name: _dequantized(t, name, hf_config) for t, name in group}
        save_file(tensors, str(out_dir / file_name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, file_name))
    if len(plan) > 1:
        index = {"metadata": {"total_size": sum(4 * int(np.prod(t.shape)) for g in plan for t, _ in g)},
                 "weight_map": weight_map}
        (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def _shard_plan(reader, shard_bytes: int) -> list[list[tuple]]:
    groups: list[list[tuple]] = [[]]
    size = 0
    for tensor in reader.tensors:
        name = hf_tensor_name(tensor.name)
        if name is None:
            continue
        nbytes = 4 * int(np.prod(tensor.shape))
        if groups[-1] and size + nbytes > shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append((tensor, name))
        size += nbytes
    return groups


def _dequantized(tensor, name: str, hf_config: dict) -> torch.Tensor:
    from gguf import dequantize

    weights = dequantize(tensor.data, tensor.tensor_type)
    # llama.cpp permutes q/k only for the llama architecture (Mistral is stored as llama too); Qwen2 is not.
    proj = name.split(".")[-2]
    if hf_config["model_type"] in ("llama", "mistral") and proj in ("q_proj", "k_proj"):
        heads = hf_config["num_attention_heads"]
        if proj == "k_proj":
            heads = hf_config.get("num_key_value_heads") or heads
        weights = unpermute_qk(weights, heads)
    # F32 tensors come back as read-only views of the memory-mapped file: copy them out.
    return torch.from_numpy(np.array(weights, dtype=np.float32, order="C", copy=True))

"""``ModelConfig``: the few numbers our Llama-family model code needs, read from an HF ``config.json``.

Both layouts transformers has written are accepted: ``rope_theta`` + ``rope_scaling`` (4.x) and the single
``rope_parameters`` dict (5.x).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightllm_struct.models.errors import ModelLoadError, UnsupportedArchitecture

# HF architecture name -> (model_type, q/k/v carry a bias regardless of config).
SUPPORTED_ARCHITECTURES: dict[str, tuple[str, bool]] = {
    "LlamaForCausalLM": ("llama", False),
    "MistralForCausalLM": ("mistral", False),
    "Qwen2ForCausalLM": ("qwen2", True),
}
_ARCH_BY_MODEL_TYPE = {model_type: arch for arch, (model_type, _) in SUPPORTED_ARCHITECTURES.items()}
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")


@dataclass(frozen=True)
class RopeScaling:
    """RoPE frequency scaling: ``linear`` (positions divided by ``factor``) or Llama 3's ``llama3``."""

    rope_type: str
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclass(frozen=True)
class ModelConfig:
    """Shape and numerics of a Llama-family decoder (Llama 2/3, SmolLM2, Mistral, Qwen2)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # q/k/v projections carry a bias
    o_proj_bias: bool = False  # Llama's attention_bias also puts one on o_proj; Qwen2 does not
    max_position_embeddings: int = 4096
    sliding_window: int | None = None
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = field(default_factory=tuple)
    architecture: str = "LlamaForCausalLM"
    model_type: str = "llama"

    def __post_init__(self) -> None:
        if self.architecture not in SUPPORTED_ARCHITECTURES:
            raise UnsupportedArchitecture(_unsupported_message(self.architecture))
        if self.num_heads % self.num_kv_heads:
            raise ModelLoadError(f"num_heads {self.num_heads} not a multiple of num_kv_heads {self.num_kv_heads}")
        positive = ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "head_dim")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ModelLoadError(f"config field {name} must be positive, got {getattr(self, name)}")

    @property
    def eos_token_id(self) -> int | None:
        """The first end-of-sequence id (``None`` if the config names none)."""
        return self.eos_token_ids[0] if self.eos_token_ids else None

    @classmethod
    def from_hf_dict(cls, hf: dict[str, Any]) -> ModelConfig:
        """Build from the contents of an HF ``config.json``.

        Raises
        ------
        UnsupportedArchitecture
            For an architecture, activation or RoPE type this package does not implement.
        """
        arch = _architecture(hf)
        model_type, qkv_bias_always = SUPPORTED_ARCHITECTURES[arch]
        if hf.get("hidden_act", "silu") != "silu":
            raise UnsupportedArchitecture(f"hidden_act {hf['hidden_act']!r} is not supported (only 'silu')")
        if hf.get("mlp_bias"):
            raise UnsupportedArchitecture("mlp_bias=True is not supported")
        num_heads = int(hf["num_attention_heads"])
        hidden = int(hf["hidden_size"])
        llama_bias = bool(hf.get("attention_bias", False)) and model_type == "llama"
        rope_theta, rope_scaling = _rope(hf)
        window = hf.get("sliding_window") if hf.get("use_sliding_window", model_type == "mistral") else None
        return cls(
            vocab_size=int(hf["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(hf["intermediate_size"]),
            num_layers=int(hf["num_hidden_layers"]),
            num_heads=num_heads,
            num_kv_heads=int(hf.get("num_key_value_heads") or num_heads),
            head_dim=int(hf.get("head_dim") or hidden // num_heads),
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            rope_theta=rope_theta,
            rope_scaling=rope_scaling,
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            attention_bias=qkv_bias_always or llama_bias,
            o_proj_bias=llama_bias,
            max_position_embeddings=int(hf.get("max_position_embeddings", 4096)),
            sliding_window=int(window) if window else None,
            bos_token_id=hf.get("bos_token_id"),
            eos_token_ids=_id_tuple(hf.get("eos_token_id")),
            architecture=arch,
            model_type=model_type,
        )

    @classmethod
    def from_pretrained(cls, model_dir: str | Path) -> ModelConfig:
        """Read ``<model_dir>/config.json``.

        Raises
        ------
        ModelLoadError
            If the file is missing or not JSON.
        UnsupportedArchitecture
            See :meth:`from_hf_dict`.
        """
        path = Path(model_dir) / "config.json"
        try:
            hf = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"cannot read {path}: {exc}") from exc
        return cls.from_hf_dict(hf)


def _unsupported_message(what: str) -> str:
    return f"unsupported architecture {what!r}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"


def _architecture(hf: dict[str, Any]) -> str:
    for arch in hf.get("architectures") or []:
        if arch in SUPPORTED_ARCHITECTURES:
            return arch
    if not hf.get("architectures") and hf.get("model_type") in _ARCH_BY_MODEL_TYPE:
        return _ARCH_BY_MODEL_TYPE[hf["model_type"]]
    named = hf.get("architectures") or hf.get("model_type") or "<none given>"
    raise UnsupportedArchitecture(_unsupported_message(str(named)))


def _rope(hf: dict[str, Any]) -> tuple[float, RopeScaling | None]:
    params = dict(hf.get("rope_parameters") or {})
    scaling = dict(hf.get("rope_scaling") or params)
    theta = float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise UnsupportedArchitecture(f"rope_type {rope_type!r} is not supported; supported: {SUPPORTED_ROPE_TYPES}")
    if rope_type == "default":
        return theta, None
    return theta, RopeScaling(
        rope_type=rope_type,
        factor=float(scaling.get("factor", 1.0)),
        low_freq_factor=float(scaling.get("low_freq_factor", 1.0)),
        high_freq_factor=float(scaling.get("high_freq_factor", 4.0)),
        original_max_position_embeddings=int(scaling.get("original_max_position_embeddings", 8192)),
    )


def _id_tuple(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    return (int(value),)

"""ModelConfig from HF config.json contents: every supported family, both RoPE layouts, clear errors."""
from __future__ import annotations

import json

import pytest

from lightllm_struct.errors import LightLLMStructError
from lightllm_struct.models.config import ModelConfig, RopeScaling
from lightllm_struct.models.errors import ModelLoadError, UnsupportedArchitecture
from lightllm_struct.models.loader import load_model

LLAMA = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128, "hidden_size": 64,
         "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "rms_norm_eps": 1e-5, "bos_token_id": 1, "eos_token_id": [2, 7], "max_position_embeddings": 512}


def test_llama_defaults():
    c = ModelConfig.from_hf_dict(LLAMA)
    assert (c.head_dim, c.num_kv_heads, c.rope_theta, c.rope_scaling) == (16, 2, 10000.0, None)
    assert (c.eos_token_ids, c.eos_token_id, c.bos_token_id) == ((2, 7), 2, 1)
    assert not (c.attention_bias or c.o_proj_bias or c.tie_word_embeddings)
    assert c.sliding_window is None


def test_llama3_rope_scaling_both_layouts():
    scaling = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}
    old = ModelConfig.from_hf_dict({**LLAMA, "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", **scaling}})
    new = ModelConfig.from_hf_dict({**LLAMA, "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0,
                                                                 **scaling}})
    assert old == new
    assert new.rope_theta == 500000.0
    assert new.rope_scaling == RopeScaling("llama3", 8.0, 1.0, 4.0, 8192)
    legacy = ModelConfig.from_hf_dict({**LLAMA, "rope_scaling": {"type": "linear", "factor": 2.0}})
    assert legacy.rope_scaling.rope_type == "linear" and legacy.rope_scaling.factor == 2.0


def test_qwen2_has_qkv_bias_only_and_mistral_window():
    qwen = ModelConfig.from_hf_dict({**LLAMA, "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
                                     "use_sliding_window": False, "sliding_window": 4096})
    assert qwen.attention_bias and not qwen.o_proj_bias and qwen.sliding_window is None
    llama_bias = ModelConfig.from_hf_dict({**LLAMA, "attention_bias": True})
    assert llama_bias.attention_bias and llama_bias.o_proj_bias
    mistral = ModelConfig.from_hf_dict({**LLAMA, "architectures": ["MistralForCausalLM"], "sliding_window": 4096})
    assert mistral.sliding_window == 4096 and mistral.model_type == "mistral"


def test_explicit_head_dim_and_model_type_fallback():
    c = ModelConfig.from_hf_dict({k: v for k, v in LLAMA.items() if k != "architectures"} | {"head_dim": 32})
    assert c.head_dim == 32 and c.architecture == "LlamaForCausalLM"


@pytest.mark.parametrize("hf", [
    {**LLAMA, "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"},
    {**LLAMA, "architectures": None, "model_type": "falcon"},
    {**LLAMA, "hidden_act": "gelu"},
    {**LLAMA, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}},
])
def test_unsupported_is_a_typed_error(hf):
    with pytest.raises(UnsupportedArchitecture) as info:
        ModelConfig.from_hf_dict(hf)
    assert isinstance(info.value, LightLLMStructError)


def test_unknown_architecture_names_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**LLAMA, "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(UnsupportedArchitecture) as info:
        load_model(tmp_path)
    message = str(info.value)
    assert "GPT2LMHeadModel" in message
    assert all(a in message for a in ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"))


def test_missing_or_broken_files_are_load_errors(tmp_path):
    with pytest.raises(ModelLoadError):
        load_model(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(LLAMA))
    with pytest.raises(ModelLoadError, match="safetensors"):
        load_model(tmp_path)

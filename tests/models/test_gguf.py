"""GGUF conversion: mixed quant types and q/k un-permutation against transformers' reader, and the cache."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from lightllm_struct.errors import LightLLMStructError
from lightllm_struct.models import gguf as gguf_mod
from lightllm_struct.models.errors import UnsupportedArchitecture
from lightllm_struct.models.gguf import cache_dir_for, ensure_converted, unpermute_qk
from lightllm_struct.models.loader import load_model
from tests.models.helpers import StepRunner
from tests.models.tiny_gguf import CHAT_TEMPLATE, llama_cpp_permute, write_tiny_gguf


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(gguf path, cache root) with the cache root exported as LLMS_CACHE_DIR for the whole module."""
    root = tmp_path_factory.mktemp("gguf")
    path = write_tiny_gguf(root / "tiny-llama.gguf")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMS_CACHE_DIR", str(root / "cache"))
        yield path, root / "cache"


def _transformers_from_gguf(path):
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_config(config)
    tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    assert set(missing) <= ({"lm_head.weight"} if config.tie_word_embeddings else set()) and not unexpected
    model.tie_weights()
    return model.float().eval()


def _compare_with_transformers(path, ours):
    reference = _transformers_from_gguf(path)
    seqs = [[5, 17, 40, 96, 3, 77, 12], [60, 61, 62], list(range(0, 90, 3))]
    got = StepRunner(ours, max_seqs=3, max_len=40).step(list(enumerate(seqs)))
    for seq, logits in zip(seqs, got):
        with torch.no_grad():
            want = reference(torch.tensor([seq])).logits[0]
        assert (logits - want).abs().max().item() <= 1e-4


def test_unpermute_inverts_llama_cpp_permute():
    w = np.random.default_rng(0).standard_normal((6 * 8, 5)).astype(np.float32)
    for heads in (1, 2, 6):
        permuted = llama_cpp_permute(w, heads)
        assert not np.array_equal(permuted, w)
        np.testing.assert_array_equal(unpermute_qk(permuted, heads), w)


def test_mixed_quant_gguf_matches_transformers(tiny):
    path, _ = tiny
    ours, config, model_dir = load_model(path)
    assert not config.tie_word_embeddings and config.num_kv_heads == 2
    _compare_with_transformers(path, ours)


def test_qwen2_gguf_with_biases_matches_transformers(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMS_CACHE_DIR", str(tmp_path / "cache"))
    path = write_tiny_gguf(tmp_path / "tiny-qwen2.gguf", arch="qwen2")
    ours, config, _ = load_model(path)
    assert config.architecture == "Qwen2ForCausalLM" and config.attention_bias and config.tie_word_embeddings
    _compare_with_transformers(path, ours)


def test_llama3_rope_freqs_become_rope_scaling(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMS_CACHE_DIR", str(tmp_path / "cache"))
    from lightllm_struct.models.config import RopeScaling
    from lightllm_struct.models.layers import rope_inv_freq

    scaling = RopeScaling("llama3", 8.0, 1.0, 4.0, 8192)
    divisors = rope_inv_freq(64, 500000.0, None) / rope_inv_freq(64, 500000.0, scaling)
    assert divisors.max() > 7  # the tensor really encodes scaling (low frequencies slowed ~8x)
    path = write_tiny_gguf(tmp_path / "tiny-llama3.gguf", rope_freqs=divisors.numpy())
    _, config, _ = load_model(path)
    assert config.rope_scaling == scaling and config.rope_theta == 500000.0
    bogus = write_tiny_gguf(tmp_path / "bogus.gguf", rope_freqs=np.linspace(1, 3, 32))
    with pytest.raises(UnsupportedArchitecture, match="rope_freqs"):
        load_model(bogus)


def test_converted_folder_has_tokenizer_and_template(tiny):
    from transformers import AutoTokenizer

    path, _ = tiny
    model_dir = ensure_converted(path)
    hf_config = json.loads((model_dir / "config.json").read_text())
    assert hf_config["architectures"] == ["LlamaForCausalLM"]
    tok_config = json.loads((model_dir / "tokenizer_config.json").read_text())
    assert tok_config["chat_template"] == CHAT_TEMPLATE
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert tokenizer.convert_ids_to_tokens(tokenizer("the", add_special_tokens=False).input_ids) == ["th", "e"]
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n"


def test_second_load_reuses_cache(tiny, monkeypatch):
    path, root = tiny
    first = ensure_converted(path)
    stamp = (first / "model.safetensors").stat().st_mtime_ns

    def must_not_run(*args, **kwargs):
        raise AssertionError("converted again although the cache holds this file")

    monkeypatch.setattr(gguf_mod, "convert_gguf", must_not_run)
    assert ensure_converted(path) == first
    _, _, model_dir = load_model(path)
    assert model_dir == first and (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in root.iterdir()] == [first.name]  # no temporary folders left behind


def test_changed_file_gets_a_new_cache_entry(tiny, tmp_path):
    path, root = tiny
    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes())
    os.utime(copy, ns=(1_000_000_000, 1_000_000_000))
    assert cache_dir_for(copy, root) != cache_dir_for(path, root)


def test_failed_conversion_leaves_nothing(tmp_path, monkeypatch):
    path = write_tiny_gguf(tmp_path / "broken.gguf", seed=1)

    def fail(gguf_path, out_dir):
        (out_dir / "config.json").write_text("{}")  # half-written output must never become an entry
        raise OSError("disk full")

    monkeypatch.setattr(gguf_mod, "convert_gguf", fail)
    with pytest.raises(OSError):
        ensure_converted(path, cache_root=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_unknown_gguf_architecture(tmp_path):
    from gguf import GGUFWriter

    path = tmp_path / "encoder.gguf"
    writer = GGUFWriter(str(path), "bert")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UnsupportedArchitecture) as info:
        ensure_converted(path, cache_root=tmp_path / "cache")
    assert isinstance(info.value, LightLLMStructError)
    assert not any((tmp_path / "cache").iterdir())


def test_big_conversions_are_sharded(tiny, tmp_path, monkeypatch):
    path, _ = tiny
    single, _, _ = load_model(path)
    monkeypatch.setattr(gguf_mod, "SHARD_BYTES", 1 << 20)
    out = ensure_converted(path, cache_root=tmp_path)
    shards = sorted(p.name for p in out.glob("*.safetensors"))
    assert len(shards) > 2 and not (out / "model.safetensors").exists()
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == shards
    sharded, _, _ = load_model(out)
    for (name, a), (_, b) in zip(single.state_dict().items(), sharded.state_dict().items()):
        assert torch.equal(a, b), name

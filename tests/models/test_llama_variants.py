"""Tiny random-weight models of every supported variant, saved by transformers, loaded by us, compared
against transformers' implementation on the same weights (full prefill, chunked prefill, decode, mixed)."""
from __future__ import annotations

import pytest
import torch

from lightllm_struct.models.loader import load_model
from tests.models.helpers import StepRunner

BASE = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=256, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)
LLAMA3_ROPE = {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 32, "rope_theta": 500000.0}
VARIANTS = {
    "llama-tied-mha": ("llama", dict(num_key_value_heads=4, tie_word_embeddings=True)),
    "llama-untied-gqa2-headdim": ("llama", dict(num_key_value_heads=2, head_dim=32, tie_word_embeddings=False)),
    "llama-bias-gqa4": ("llama", dict(num_key_value_heads=1, attention_bias=True)),
    "llama3-rope-scaling": ("llama", dict(num_key_value_heads=2, rope_parameters=LLAMA3_ROPE)),
    "qwen2-qkv-bias": ("qwen2", dict(num_key_value_heads=2, tie_word_embeddings=False)),
    "mistral-sliding-window": ("mistral", dict(num_key_value_heads=2, sliding_window=6, head_dim=16)),
}
# Three sequences of different lengths (the longest crosses the Mistral window and the Llama 3 cut-off).
LENGTHS = (5, 11, 40)


def _hf_model(kind: str, overrides: dict):
    import transformers

    cfg_cls, model_cls = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
    }[kind]
    config = cfg_cls(**{**BASE, **overrides})
    torch.manual_seed(0)
    model = model_cls(config).float().eval()
    with torch.no_grad():
        # Big enough weights (and non-zero biases) that a wrong path changes logits by far more than 1e-4.
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0, 0.15)
    return model


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def pair(request, tmp_path_factory):
    kind, overrides = VARIANTS[request.param]
    hf = _hf_model(kind, overrides)
    path = tmp_path_factory.mktemp(request.param)
    # One variant stored as several shards + index, as big checkpoints are.
    shard = "20KB" if request.param == "qwen2-qkv-bias" else "50MB"
    hf.save_pretrained(path, max_shard_size=shard)
    ours, config, _ = load_model(path)
    return hf, ours, config


def _sequences(vocab: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randint(0, vocab, (n,), generator=gen).tolist() for n in LENGTHS]


def _reference(hf, seq: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return hf(torch.tensor([seq])).logits[0].float()


def test_prefill_batch_matches(pair):
    hf, ours, _ = pair
    seqs = _sequences(BASE["vocab_size"])
    got = StepRunner(ours, max_seqs=3, max_len=64).step(list(enumerate(seqs)))
    for seq, logits in zip(seqs, got):
        assert (logits - _reference(hf, seq)).abs().max().item() <= 1e-4


def test_chunked_prefill_decode_and_mixed_steps_match(pair):
    hf, ours, _ = pair
    seqs = _sequences(BASE["vocab_size"])
    runner = StepRunner(ours, max_seqs=3, max_len=64, seed=3)
    got: list[list[torch.Tensor]] = [[], [], []]

    def run(items):
        for (i, _), logits in zip(items, runner.step(items)):
            got[i].append(logits)

    run([(0, seqs[0][:3]), (1, seqs[1][:4])])  # two prefills; sequence 2 not yet started
    run([(0, seqs[0][3:4]), (1, seqs[1][4:5]), (2, seqs[2][:20])])  # two decodes mixed with a prefill
    run([(2, seqs[2][20:30]), (1, seqs[1][5:6])])  # a chunked-prefill continuation mixed with a decode
    while runner.lens[2] < len(seqs[2]):  # decode-only steps, sequences joining and leaving
        items = [(i, [seqs[i][runner.lens[i]]]) for i in range(3) if runner.lens[i] < len(seqs[i])]
        run(items)
    for seq, parts in zip(seqs, got):
        assert (torch.cat(parts) - _reference(hf, seq)).abs().max().item() <= 1e-4


def test_config_reads_variant(pair):
    hf, ours, config = pair
    assert config.num_kv_heads == hf.config.num_key_value_heads
    assert config.head_dim == (getattr(hf.config, "head_dim", None) or BASE["hidden_size"] // 4)
    assert config.tie_word_embeddings == hf.config.tie_word_embeddings
    assert (ours.lm_head.weight is ours.embed_tokens.weight) == config.tie_word_embeddings
    assert config.attention_bias == (ours.layers[0].self_attn.qkv_proj.bias is not None)


def test_bf16_weights_close_to_fp32(pair, tmp_path):
    hf, _, _ = pair
    hf.save_pretrained(tmp_path)
    ours, _, _ = load_model(tmp_path, dtype=torch.bfloat16)
    assert ours.layers[0].mlp.gate_up_proj.weight.dtype == torch.bfloat16
    seq = _sequences(BASE["vocab_size"])[1]
    got = StepRunner(ours, max_seqs=1, max_len=16).step([(0, seq)])[0]
    want = _reference(hf, seq)
    assert got.dtype == torch.float32
    assert (got - want).abs().max().item() <= 0.05 * want.abs().max().item()

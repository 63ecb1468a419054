"""The model on a CUDA device: torch path in fp32, and the "auto" backend (Triton) with the Triton ops in
bf16, each against transformers' fp32 CPU logits on the same random weights."""
from __future__ import annotations

import pytest
import torch

from lightllm_struct.models.loader import load_model
from lightllm_struct.models.ops import triton_ops
from tests.models.helpers import StepRunner

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", params=["llama-gqa", "qwen2-bias"])
def checkpoint(request, tmp_path_factory):
    import transformers

    common = dict(vocab_size=256, hidden_size=256, intermediate_size=512, num_hidden_layers=3,
                  num_attention_heads=8, num_key_value_heads=2, head_dim=32, max_position_embeddings=512)
    if request.param == "qwen2-bias":
        hf = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common))
    else:
        hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**common, tie_word_embeddings=True))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            p.copy_(1 + 0.1 * torch.randn_like(p)) if "norm" in name else p.normal_(0, 0.08)
    path = tmp_path_factory.mktemp(request.param)
    hf.float().eval().save_pretrained(path)
    return hf, path


def _run(model) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    seqs = [torch.randint(0, 256, (n,), generator=gen).tolist() for n in (7, 33, 120)]
    runner = StepRunner(model, max_seqs=3, max_len=128)
    out = runner.step([(i, s[:-3]) for i, s in enumerate(seqs)])  # prefill
    for k in (3, 2, 1):  # three decode steps
        out = [torch.cat([o, n]) for o, n in zip(out, runner.step([(i, [s[-k]]) for i, s in enumerate(seqs)]))]
    return seqs, out


def _reference(hf, seqs) -> list[torch.Tensor]:
    with torch.no_grad():
        return [hf(torch.tensor([s])).logits[0] for s in seqs]


def test_cuda_fp32_torch_backend(checkpoint):
    hf, path = checkpoint
    model, _, _ = load_model(path, device="cuda", attn_backend="torch")
    assert model.embed_tokens.weight.is_cuda
    seqs, got = _run(model)
    for g, w in zip(got, _reference(hf, seqs)):
        assert (g - w).abs().max().item() <= 1e-3


def test_cuda_bf16_auto_backend_with_triton_ops(checkpoint):
    pytest.importorskip("triton")
    hf, path = checkpoint
    model, _, _ = load_model(path, device="cuda", dtype=torch.bfloat16, ops=triton_ops())
    assert type(model.attn_backend).__name__ == "TritonAttentionBackend"
    seqs, got = _run(model)
    for g, w in zip(got, _reference(hf, seqs)):
        assert (g - w).abs().max().item() <= 0.05 * w.abs().max().item()
        assert (g.argmax(-1) == w.argmax(-1)).float().mean() >= 0.9

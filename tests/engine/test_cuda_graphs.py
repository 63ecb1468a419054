from __future__ import annotations

import pytest
import torch

from lightllm_struct.engine.cuda_graphs import CUDAGraphError, CUDAGraphRunner
from lightllm_struct.models.kv_cache import KVCache
from lightllm_struct.models.attention import AttentionMetadata
from lightllm_struct.models.config import ModelConfig
from lightllm_struct.models.llama import LlamaForCausalLM
from lightllm_struct.models.ops import triton_ops

TINY = ModelConfig(vocab_size=300, hidden_size=128, intermediate_size=256, num_layers=2, num_heads=4,
                   num_kv_heads=2, head_dim=32, rope_theta=10000.0, max_position_embeddings=512)


def _decode_meta(seq_lens: list[int], table: torch.Tensor) -> AttentionMetadata:
    return AttentionMetadata.build(seq_lens, [1] * len(seq_lens), table, device=table.device)


def test_run_refuses_steps_it_has_no_graph_for():
    kv = KVCache(num_layers=1, num_slots=8, num_kv_heads=1, head_dim=4)
    runner = CUDAGraphRunner(model=None, kv_cache=kv, scratch_slot=7, max_context=4, batch_sizes=(1, 2))
    meta = _decode_meta([2], torch.tensor([[0, 1]], dtype=torch.int32))
    assert not runner.can_run(1, 1, 2)  # nothing captured yet
    with pytest.raises(CUDAGraphError, match="no captured graph"):
        runner.run(torch.zeros(1, dtype=torch.int64), torch.zeros(1, dtype=torch.int64), meta)


@pytest.mark.gpu
def test_graph_replay_matches_eager_forward_with_padding_rows():
    torch.manual_seed(0)
    model = LlamaForCausalLM(TINY, ops=triton_ops(), attn_backend="triton", device="cuda", dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.ones_like(p) if "norm" in name else 0.05 * torch.randn_like(p))
    kv = KVCache(num_layers=2, num_slots=200, num_kv_heads=2, head_dim=32, dtype=torch.float32, device="cuda")
    for buf in kv.k_buffers + kv.v_buffers:
        buf.normal_()
    runner = CUDAGraphRunner(model, kv, scratch_slot=199, max_context=64, batch_sizes=(1, 4))
    runner.capture()
    seq_lens = [5, 40, 17]  # 3 rows: replayed in the size-4 graph with one padding row
    table = torch.randperm(199, device="cuda")[:3 * 64].view(3, 64).int()
    meta = _decode_meta(seq_lens, table[:, :max(seq_lens)])
    ids = torch.randint(0, 300, (3,), device="cuda")
    pos = torch.tensor([n - 1 for n in seq_lens], device="cuda")
    before = kv.k_buffers[0].clone()
    graph_logits = runner.run(ids, pos, meta).clone()
    after_graph = kv.k_buffers[0].clone()
    eager = model.compute_logits(model.forward(ids, pos, meta=meta, kv_cache=kv))
    assert graph_logits.shape == (3, 300)
    assert torch.allclose(graph_logits, eager, atol=1e-4, rtol=1e-4)
    assert torch.allclose(after_graph, kv.k_buffers[0], atol=1e-5)  # both wrote the same new K
    changed = set((before != after_graph).flatten(1).any(1).nonzero().flatten().tolist())
    assert changed <= set(meta.slot_mapping.tolist()) | {199}  # the padding row wrote only the scratch slot
    assert set(meta.slot_mapping.tolist()) <= changed
    assert runner.can_run(3, 1, 40) and not runner.can_run(1, 1, 65) and not runner.can_run(5, 1, 40)

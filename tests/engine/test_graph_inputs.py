"""The shapes CUDA graphs are captured for, and the padded layout of a step (CPU: no graph needed)."""
from __future__ import annotations

import pytest
import torch

from lightllm_struct.engine.cuda_graphs import CUDAGraphError, CUDAGraphRunner
from lightllm_struct.engine.graph_inputs import (
    DEFAULT_BATCH_SIZES, IDS, POSITIONS, ROW_LENS, SLOTS, bucket, capture_sizes, pad_step, tokens_per_seq_sizes,
)
from lightllm_struct.models.kv_cache import KVCache
from lightllm_struct.models.attention import AttentionMetadata
from lightllm_struct.models.config import ModelConfig
from lightllm_struct.models.llama import LlamaForCausalLM

TINY = ModelConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4,
                   num_kv_heads=2, head_dim=16, rope_theta=10000.0, max_position_embeddings=512)


def test_every_batch_size_up_to_max_num_seqs_has_a_graph():
    for max_num_seqs in (1, 3, 32, 100, 256, 300, 1000):
        sizes = capture_sizes(max_num_seqs)
        assert sizes[-1] == max_num_seqs and sizes == tuple(sorted(set(sizes)))
        assert all(bucket(b, sizes) is not None and bucket(b, sizes) >= b for b in range(1, max_num_seqs + 1))
    assert set(DEFAULT_BATCH_SIZES) <= set(capture_sizes(256)) and max(DEFAULT_BATCH_SIZES) >= 256
    assert capture_sizes(300) == DEFAULT_BATCH_SIZES + (300,)
    assert capture_sizes(400)[-3:] == (256 + 64, 256 + 128, 400)
    assert bucket(3, (1, 2, 4, 8)) == 4 and bucket(9, (1, 2, 4, 8)) is None
    assert tokens_per_seq_sizes(1) == (1,) and tokens_per_seq_sizes(8) == (1, 2, 4, 8)
    assert tokens_per_seq_sizes(6) == (1, 2, 4, 6)


def test_pad_step_puts_each_sequence_at_the_end_of_its_block():
    layout = pad_step([[5, 6, 7], [9]], [10, 4], [100, 101, 102, 103], size=3, k=4, scratch_slot=999)
    assert layout.shape == (4, 12)
    assert layout[IDS].tolist() == [0, 5, 6, 7, 0, 0, 0, 9] + [0] * 4
    assert layout[POSITIONS].tolist() == [0, 10, 11, 12, 0, 0, 0, 4] + [0] * 4
    assert layout[SLOTS].tolist() == [999, 100, 101, 102, 999, 999, 999, 103] + [999] * 4
    # A row's context ends at its own token (the causal mask); dummies and padding rows have none.
    assert layout[ROW_LENS].tolist() == [0, 11, 12, 13, 0, 0, 0, 5] + [0] * 4
    plain = pad_step([[5], [9]], [10, 4], [100, 103], size=4, k=1, scratch_slot=999)
    assert plain.tolist() == [[5, 9, 0, 0], [10, 4, 0, 0], [100, 103, 999, 999], [11, 5, 0, 0]]


def _tiny_model(device: str):
    torch.manual_seed(0)
    if device == "cuda":
        from lightllm_struct.models.ops import triton_ops

        model = LlamaForCausalLM(TINY, ops=triton_ops(), attn_backend="triton", device="cuda", dtype=torch.float32)
    else:
        model = LlamaForCausalLM(TINY, attn_backend="torch", device="cpu", dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.ones_like(p) if "norm" in name else 0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_padded_multi_token_step_matches_the_extend_forward(device):
    """Sequences with cached contexts and 1-3 new tokens each: the replay of the padded (size 4, k 4) layout
    (captured on CUDA, eager on the CPU) gives the same last-token logits and the same new K/V as the
    ordinary extend forward."""
    model, scratch = _tiny_model(device), 199
    kv = KVCache(num_layers=2, num_slots=200, num_kv_heads=2, head_dim=16, device=device)
    for buf in kv.k_buffers + kv.v_buffers:
        buf.normal_()
    runner = CUDAGraphRunner(model, kv, scratch_slot=scratch, max_context=64, batch_sizes=(1, 4),
                             tokens_per_seq=(1, 2, 4), eager=device == "cpu")
    runner.capture()
    assert runner.shapes == [(1, 1), (1, 2), (1, 4), (4, 1), (4, 2), (4, 4)]
    contexts, new = [7, 30, 12], [[3, 4, 5], [8], [11, 12]]
    seq_lens = [c + len(t) for c, t in zip(contexts, new)]
    table = torch.randperm(scratch)[:3 * 64].view(3, 64).to(device)
    slots = torch.cat([table[i, c:n] for i, (c, n) in enumerate(zip(contexts, seq_lens))]).cpu()
    assert runner.padded_shape(3, 3) == (4, 4)
    layout = pad_step(new, contexts, slots.tolist(), size=4, k=4, scratch_slot=scratch)
    before = [b.clone() for b in kv.k_buffers]
    graph_logits = runner.run_padded(layout, table[:, :max(seq_lens)], num_seqs=3, k=3).clone()
    graph_k = [b.clone() for b in kv.k_buffers]
    for buf, old in zip(kv.k_buffers, before):
        buf.copy_(old)
    meta = AttentionMetadata.build(seq_lens, [len(t) for t in new], table[:, :max(seq_lens)], slot_mapping=slots,
                                   device=device)
    ids = torch.tensor([t for toks in new for t in toks], device=device)
    pos = torch.cat([torch.arange(c, n) for c, n in zip(contexts, seq_lens)]).to(device)
    hidden = model.forward(ids, pos, meta=meta, kv_cache=kv)
    eager = model.compute_logits(hidden[meta.query_start_loc[1:].long() - 1])
    assert graph_logits.shape == (3, 300)
    assert torch.allclose(graph_logits, eager, atol=1e-4, rtol=1e-4)
    for layer, old in enumerate(before):
        changed = set((old != graph_k[layer]).flatten(1).any(1).nonzero().flatten().tolist())
        assert changed <= set(slots.tolist()) | {scratch}  # dummies and padding wrote only the scratch slot
        assert torch.allclose(graph_k[layer][slots], kv.k_buffers[layer][slots], atol=1e-6)
    with pytest.raises(CUDAGraphError, match="no captured graph"):
        runner.padded_shape(5, 1)

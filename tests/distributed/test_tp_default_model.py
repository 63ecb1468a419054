"""The default model (SmolLM2-135M: 9 query heads, 3 KV heads, split 2 + 1 KV heads over 2 ranks) at TP=2
gives TP=1's logits (fp32, 1e-4) and greedy tokens for 32 steps of a batch of 4."""
from __future__ import annotations

import torch

from lightllm_struct.distributed.tp_model import load_tp_model
from lightllm_struct.models.loader import load_model
from tests.distributed.test_tp_model import STEPS, greedy_trace

# Token ids of SmolLM2's vocabulary (plain text prompts; lengths differ so prefill rows are uneven).
PROMPTS = [[504, 3575, 282, 4649, 314], [1], [9690, 2398, 28, 436, 1780, 1010, 30, 2], [43, 44, 45, 46]]


def test_default_model_tp2_matches_tp1(rank0_cleanup):
    ref, config, _ = load_model(None)
    want_tokens, want_logits = greedy_trace(ref, PROMPTS, STEPS, announce=False)
    del ref
    model, _, _ = load_tp_model(None, tensor_parallel_size=2, device="cpu", timeout_s=120)
    try:
        assert (model.num_kv_heads_local, model.layers[0].self_attn.qkv_proj.num_heads) == (2, 6)
        got_tokens, got_logits = greedy_trace(model, PROMPTS, STEPS, announce=True)
    finally:
        model.shutdown()
    assert got_tokens == want_tokens
    for got, want in zip(got_logits, want_logits):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)

"""TP=2 over gloo gives TP=1's logits (fp32, 1e-4) and greedy tokens, for tiny random models."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightllm_struct.distributed.group import find_free_port
from lightllm_struct.distributed.health import RankFailure
from lightllm_struct.distributed.tp_model import TensorParallelModel, load_tp_model
from lightllm_struct.models.attention import AttentionMetadata
from lightllm_struct.models.loader import load_model
from tests.distributed.tiny_model import write_tiny_llama
from tests.models.helpers import TinyKVCache

PROMPTS = [[5, 17, 99, 3, 250, 7], [11], [300, 42, 42, 8, 1, 77, 123, 64, 9], [2, 200, 31]]
STEPS = 32


def greedy_trace(model, prompts, steps, *, announce: bool):
    """Greedy decoding with scattered KV slots; returns (tokens per prompt, logits of every step)."""
    cfg = model.config
    max_len = max(map(len, prompts)) + steps
    num_slots = len(prompts) * max_len + 5
    kv = TinyKVCache(cfg.num_layers, num_slots, model.num_kv_heads_local, cfg.head_dim)
    table = torch.randperm(num_slots, generator=torch.Generator().manual_seed(1))[: len(prompts) * max_len]
    table = table.view(len(prompts), max_len)
    lens, feed = [0] * len(prompts), [list(p) for p in prompts]
    out, trace = [[] for _ in prompts], []
    for _ in range(steps):
        seq_lens = [n + len(f) for n, f in zip(lens, feed)]
        query_lens = [len(f) for f in feed]
        meta = AttentionMetadata.build(seq_lens, query_lens, table)
        ids = torch.tensor([t for f in feed for t in f])
        positions = torch.cat([torch.arange(s - q, s) for s, q in zip(seq_lens, query_lens)])
        last = meta.query_start_loc[1:].long() - 1
        kwargs = {"logits_indices": last} if announce else {}
        hidden = model.forward(ids, positions, meta=meta, kv_cache=kv, **kwargs)
        logits = model.compute_logits(hidden[last])
        trace.append(logits)
        for i, tok in enumerate(logits.argmax(-1).tolist()):
            out[i].append(tok)
        lens, feed = seq_lens, [[o[-1]] for o in out]
    return out, trace


@pytest.mark.parametrize("shape", [
    dict(num_heads=4, num_kv_heads=4),
    dict(num_heads=4, num_kv_heads=2, architecture="Qwen2ForCausalLM", tie=True),  # GQA + qkv bias + tied
    dict(num_heads=4, num_kv_heads=1),  # fewer KV heads than ranks: the KV head is replicated
], ids=["mha", "gqa2-bias-tied", "gqa1-replicated"])
def test_tp2_matches_tp1(tmp_path, shape, rank0_cleanup):
    path = write_tiny_llama(tmp_path / "tiny", **shape)
    ref, _, _ = load_model(path)
    want_tokens, want_logits = greedy_trace(ref, PROMPTS, STEPS, announce=False)
    model, config, _ = load_tp_model(path, tensor_parallel_size=2, device="cpu", timeout_s=60)
    try:
        assert isinstance(model, TensorParallelModel) and model.tp_size == 2
        expected_kv = max(1, shape["num_kv_heads"] // 2)
        assert model.num_kv_heads_local == expected_kv
        # Rank 0 holds only its share of the weights, never the full model.
        assert model.embed_tokens.weight.shape[0] == -(-config.vocab_size // 2)
        for announce in (True, False):  # rows named up front, and rows shipped after the step
            got_tokens, got_logits = greedy_trace(model, PROMPTS, STEPS, announce=announce)
            assert got_tokens == want_tokens
            for got, want in zip(got_logits, want_logits):
                torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    finally:
        model.shutdown()
    assert all(p.exitcode == 0 for p in model.ranks.procs.values())


def test_dead_rank_fails_the_next_step_with_its_name(tmp_path, rank0_cleanup):
    model, _, _ = load_tp_model(write_tiny_llama(tmp_path / "tiny"), tensor_parallel_size=2, device="cpu",
                                timeout_s=60)
    try:
        greedy_trace(model, PROMPTS[:1], 2, announce=True)
        pid = model.ranks.procs[1].pid
        model.ranks.procs[1].kill()
        with pytest.raises(RankFailure, match=rf"rank 1 \(pid {pid}\) was killed by SIGKILL"):
            for _ in range(50):  # the watchdog or the broken collective reports it, whichever is first
                greedy_trace(model, PROMPTS[:1], 2, announce=True)
    finally:
        model.shutdown()


def test_torchrun_launch_matches_tp1(tmp_path, rank0_cleanup):
    """The standard launcher: torchrun starts both ranks, rank 0 joins through RANK/WORLD_SIZE/MASTER_*."""
    path = write_tiny_llama(tmp_path / "tiny", num_kv_heads=2)
    ref, _, _ = load_model(path)
    want, _ = greedy_trace(ref, PROMPTS, 8, announce=False)
    out = tmp_path / "out.json"
    script = Path(__file__).with_name("torchrun_tiny.py")
    cmd = [str(Path(sys.executable).with_name("torchrun")), "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(find_free_port()), str(script), str(path), str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got == {"tokens": want, "procs": 0}  # no spawned ranks: torchrun owns the processes

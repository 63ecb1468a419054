"""Test-side driver for the model over a token-level KV cache, independent of the engine.

``StepRunner`` plays the engine's part minimally: a fixed, deliberately scattered slot table per sequence,
one ``AttentionMetadata`` per step, any mix of prefill chunks and decodes in a step.
"""
from __future__ import annotations

import torch

from lightllm_struct.models.attention import AttentionMetadata


class TinyKVCache:
    """The two attributes the attention backends use, one ``[num_slots, kv_heads, head_dim]`` pool a layer."""

    def __init__(self, num_layers: int, num_slots: int, kv_heads: int, head_dim: int, dtype=torch.float32,
                 device="cpu"):
        self.num_slots = num_slots
        shape = (num_slots, kv_heads, head_dim)
        self.k_buffers = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.v_buffers = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]


class StepRunner:
    """Feeds steps of ``(sequence index, new token ids)`` to ``model`` and returns each item's logits."""

    def __init__(self, model, *, max_seqs: int, max_len: int, seed: int = 0) -> None:
        self.model = model
        num_slots = max_seqs * max_len + 7
        cfg, weight = model.config, model.embed_tokens.weight
        self.device = weight.device
        self.kv = TinyKVCache(cfg.num_layers, num_slots, model.num_kv_heads_local, cfg.head_dim,
                              dtype=weight.dtype, device=weight.device)
        # Scattered slots: attention must gather by slot index, never assume contiguous blocks.
        perm = torch.randperm(num_slots, generator=torch.Generator().manual_seed(seed))
        self.table = perm[: max_seqs * max_len].view(max_seqs, max_len)
        self.lens = [0] * max_seqs

    def step(self, items: list[tuple[int, list[int]]]) -> list[torch.Tensor]:
        """Run one step; returns fp32 logits ``[len(tokens), vocab]`` for each ``(seq, tokens)`` item."""
        seq_lens = [self.lens[i] + len(toks) for i, toks in items]
        query_lens = [len(toks) for _, toks in items]
        rows = torch.stack([self.table[i] for i, _ in items])
        meta = AttentionMetadata.build(seq_lens, query_lens, rows, device=self.device)
        ids = torch.tensor([t for _, toks in items for t in toks], dtype=torch.int64, device=self.device)
        positions = torch.cat([torch.arange(s - q, s) for s, q in zip(seq_lens, query_lens)]).to(self.device)
        hidden = self.model(ids, positions, meta=meta, kv_cache=self.kv)
        logits = self.model.compute_logits(hidden)
        for (i, _), s in zip(items, seq_lens):
            self.lens[i] = s
        return list(logits.cpu().split(query_lens))


def greedy_generate(model, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    """Batched greedy decoding: one prefill step for all prompts, then one decode step per token."""
    runner = StepRunner(model, max_seqs=len(prompts), max_len=max(map(len, prompts)) + max_new_tokens)
    logits = runner.step(list(enumerate(prompts)))
    out = [[int(lg[-1].argmax())] for lg in logits]
    for _ in range(max_new_tokens - 1):
        logits = runner.step([(i, [toks[-1]]) for i, toks in enumerate(out)])
        for toks, lg in zip(out, logits):
            toks.append(int(lg[-1].argmax()))
    return out

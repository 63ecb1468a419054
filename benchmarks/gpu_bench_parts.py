"""The pieces of ``gpu_bench.py``: model shapes, random-weight builders, and one function per measurement."""
from __future__ import annotations

import functools
import gc
import json
import time

import torch
import triton

from lightllm_struct.engine.cuda_graphs import CUDAGraphRunner
from lightllm_struct.models.kv_cache import KVCache
from lightllm_struct.kernels.sampling import sample_tokens
from lightllm_struct.models.attention import AttentionMetadata
from lightllm_struct.models.config import ModelConfig, RopeScaling
from lightllm_struct.models.llama import LlamaForCausalLM
from lightllm_struct.models.ops import TORCH_OPS, triton_ops

BF16 = torch.bfloat16
_LLAMA3_ROPE = dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                    original_max_position_embeddings=8192)
SHAPES = {
    "llama-3.2-1b": ModelConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_layers=16,
                                num_heads=32, num_kv_heads=8, head_dim=64, rope_theta=500000.0,
                                rope_scaling=RopeScaling(**_LLAMA3_ROPE), tie_word_embeddings=True,
                                max_position_embeddings=131072),
    "llama-3-8b": ModelConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_layers=32,
                              num_heads=32, num_kv_heads=8, head_dim=128, rope_theta=500000.0,
                              max_position_embeddings=8192),
    "smollm2-135m": ModelConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30,
                                num_heads=9, num_kv_heads=3, head_dim=64, rope_theta=100000.0,
                                tie_word_embeddings=True, max_position_embeddings=8192),
}
# Bounded strings and a bounded array, so sampled outputs (random weights) walk through the whole object and
# finish, and requests restart at different times instead of all staying inside one long string.
SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 16}, "age": {"type": "integer", "minimum": 0, "maximum": 150},
    "role": {"enum": ["admin", "user", "guest"]},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3}},
    "required": ["name", "age", "role", "tags"], "additionalProperties": False}


def ms(fn, *, warmup=25, rep=100) -> float:
    return triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median")


@torch.no_grad()
def random_init(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator(device="cpu").manual_seed(seed)
    for name, p in model.named_parameters():
        vals = torch.ones(p.shape) if "norm" in name else 0.02 * torch.randn(p.shape, generator=g)
        p.copy_(vals.to(p.dtype))


def build_model(cfg: ModelConfig, *, max_batch: int, max_context: int, kv_budget_bytes: float,
                batch_sizes: tuple[int, ...] = (1, 8, 32, 128)):
    model = LlamaForCausalLM(cfg, ops=triton_ops(), attn_backend="triton", device="cuda", dtype=BF16)
    for p in model.parameters():  # random weights on the GPU: fast even for 8B
        torch.nn.init.normal_(p, std=0.02)
    per_slot = KVCache.bytes_per_slot(num_layers=cfg.num_layers, num_kv_heads=cfg.num_kv_heads,
                                      head_dim=cfg.head_dim, dtype=BF16)
    num_slots = int(min(max_batch * max_context, kv_budget_bytes // per_slot)) + 1
    kv = KVCache(num_layers=cfg.num_layers, num_slots=num_slots, num_kv_heads=cfg.num_kv_heads,
                 head_dim=cfg.head_dim, dtype=BF16, device="cuda")
    for buf in kv.k_buffers + kv.v_buffers:  # never time attention on zeros
        buf.normal_()
    runner = CUDAGraphRunner(model, kv, scratch_slot=num_slots - 1, max_context=max_context,
                             batch_sizes=batch_sizes)
    runner.capture()
    return model, kv, runner


def model_bytes(model: torch.nn.Module, cfg: ModelConfig) -> int:
    """Weight bytes a decode step reads: everything but an untied embedding table (only B rows of it)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    if not cfg.tie_word_embeddings:
        total -= cfg.vocab_size * cfg.hidden_size * 2
    return total


def _greedy(batch: int, device="cuda") -> dict:
    return dict(temperature=torch.zeros(batch, device=device), top_p=torch.ones(batch, device=device),
                top_k=torch.zeros(batch, dtype=torch.int32, device=device),
                seed=torch.arange(batch, device=device), step=torch.zeros(batch, dtype=torch.int64, device=device))


def _decode_inputs(kv: KVCache, cfg: ModelConfig, batch: int, ctx: int):
    table = torch.randperm(kv.num_slots - 1, device="cuda")[:batch * (ctx + 1)].view(batch, ctx + 1).int()
    meta = AttentionMetadata.build([ctx + 1] * batch, [1] * batch, table, device="cuda")
    ids = torch.randint(0, cfg.vocab_size, (batch,), device="cuda")
    pos = torch.full((batch,), ctx, dtype=torch.int64, device="cuda")
    return ids, pos, meta


def decode_case(model, kv, runner, cfg, *, batch: int, ctx: int) -> dict | None:
    if batch * (ctx + 1) > kv.num_slots - 1:
        return None
    ids, pos, meta = _decode_inputs(kv, cfg, batch, ctx)
    params = _greedy(batch)
    graph_step = lambda: sample_tokens(runner.run(ids, pos, meta), **params)  # noqa: E731

    def eager_step():
        return sample_tokens(model.compute_logits(model.forward(ids, pos, meta=meta, kv_cache=kv)), **params)

    graph_logits = runner.run(ids, pos, meta).clone()
    eager_logits = model.compute_logits(model.forward(ids, pos, meta=meta, kv_cache=kv))
    maxdiff = float((graph_logits - eager_logits).abs().max() / eager_logits.abs().max())
    return dict(graph_ms=ms(graph_step), eager_ms=ms(eager_step, warmup=5, rep=30), maxdiff=maxdiff)


def prefill_case(model, kv, cfg, *, seq: int) -> tuple[float, float]:
    table = torch.randperm(kv.num_slots - 1, device="cuda")[:seq].view(1, seq).int()
    meta = AttentionMetadata.build([seq], [seq], table, device="cuda")
    ids = torch.randint(0, cfg.vocab_size, (seq,), device="cuda")
    pos = torch.arange(seq, device="cuda")
    fn = lambda: model.compute_logits(model.forward(ids, pos, meta=meta, kv_cache=kv)[-1:])  # noqa: E731
    params = sum(p.numel() for p in model.parameters()) - cfg.vocab_size * cfg.hidden_size
    attn = 4 * cfg.num_layers * cfg.num_heads * cfg.head_dim * seq * (seq + 1) / 2
    work = 2 * params * seq + 2 * cfg.vocab_size * cfg.hidden_size + attn
    return ms(fn, warmup=100, rep=500), work


def hf_generate_ms_per_step(cfg: ModelConfig, *, ctx: int) -> float:
    import transformers
    hcfg = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim, rope_theta=cfg.rope_theta, tie_word_embeddings=cfg.tie_word_embeddings,
        max_position_embeddings=8192, rope_scaling=_LLAMA3_ROPE if cfg.rope_scaling else None)
    with torch.device("cuda"):
        hf = transformers.LlamaForCausalLM(hcfg).to(BF16).eval()
    prompt = torch.randint(0, cfg.vocab_size, (1, ctx), device="cuda")

    def timed(n: int) -> float:
        torch.cuda.synchronize()
        t = time.perf_counter()
        hf.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
        torch.cuda.synchronize()
        return time.perf_counter() - t
    timed(4)
    short, long = min(timed(1) for _ in range(3)), min(timed(33) for _ in range(2))
    del hf
    return (long - short) / 32 * 1e3


@functools.lru_cache(maxsize=1)
def _llama3_tokenizer():
    """The Llama 3 vocabulary (quicktok) and its TokenizerInfo, built once per process."""
    from lightllm_struct.grammar import TokenizerInfo
    from lightllm_struct.grammar.vocab.quicktok import load_quicktok_vocab
    qv = load_quicktok_vocab("llama3")
    return qv, TokenizerInfo.from_vocab(qv.vocab, eos_token_ids=qv.eos_token_ids)


def _json_grammar():
    """The benchmark schema compiled afresh (its own empty mask cache) against the Llama 3 vocabulary."""
    from lightllm_struct.grammar import GrammarCompiler
    qv, tok = _llama3_tokenizer()
    t = time.perf_counter()
    grammar = GrammarCompiler(tok).compile_json_schema(SCHEMA)
    return qv, grammar, time.perf_counter() - t


def _json_grammar_batch(grammar, batch: int):
    from lightllm_struct.grammar import Matcher, allocate_token_bitmask
    return [Matcher(grammar) for _ in range(batch)], allocate_token_bitmask(batch, grammar.tokenizer.vocab_size)


def constrained_decode(model, kv, runner, cfg, *, batch: int, ctx: int, steps: int) -> dict:
    """Per-step time of engine-like decode loops (graph launch, then host work, then sample and read the
    tokens back), without and with a JSON-schema grammar mask per request filled during the forward.

    The grammar is compiled afresh for every case, so the first constrained pass meets masks that are not
    cached yet ("cold": the first requests of a new schema; only the vocabulary's trie scans may be shared
    with earlier cases); the second pass runs the same grammar again ("steady": what a server sees once a
    schema has been served before). Requests restart at their own pace, so they sit at different places of
    the schema at any step."""
    qv, grammar, compile_s = _json_grammar()
    gc.freeze()  # as the engine does after loading: full collections would scan the model's and vocabulary's objects
    matchers, mask_cpu = _json_grammar_batch(grammar, batch)
    mask_cpu = mask_cpu.pin_memory()
    mask_gpu = mask_cpu.to("cuda")
    ids, pos, meta = _decode_inputs(kv, cfg, batch, ctx)
    params = dict(_greedy(batch), temperature=torch.full((batch,), 0.7, device="cuda"))
    texts, counts = [[] for _ in range(batch)], {"valid": 0, "completed": 0, "rejected": 0}
    host_toks = torch.empty(batch, dtype=torch.int64).pin_memory()
    toks_ready = torch.cuda.Event()

    def loop(constrained: bool) -> tuple[float, float, float]:
        """Pipelined like an overlapping engine: step s+1's forward is queued right after step s's sampler,
        so reading the tokens back, advancing the matchers and filling the next masks all run on the host
        while the GPU computes the next forward. Returns (ms per step, fill ms, accept ms per step)."""
        fill = accept = 0.0
        torch.cuda.synchronize()
        t = time.perf_counter()
        logits = runner.run(ids, pos, meta)
        for step in range(steps):
            if constrained:
                t0 = time.perf_counter()
                for i, m in enumerate(matchers):
                    m.fill_next_token_bitmask(mask_cpu, index=i)
                fill += time.perf_counter() - t0
                mask_gpu.copy_(mask_cpu, non_blocking=True)
            params["step"].fill_(step)
            toks = sample_tokens(logits, **params, bitmask=mask_gpu if constrained else None)
            ids.copy_(toks)
            host_toks.copy_(toks, non_blocking=True)
            toks_ready.record()
            logits = runner.run(ids, pos, meta)  # the next forward: the host works while it runs
            toks_ready.synchronize()
            t0 = time.perf_counter()
            if constrained:
                _advance(matchers, host_toks.tolist(), qv.vocab, texts, counts)
            accept += time.perf_counter() - t0
        torch.cuda.synchronize()
        return ((time.perf_counter() - t) / steps * 1e3, fill / steps * 1e3, accept / steps * 1e3)

    # The masked variant of the sampling kernel is compiled on its first call (per batch-size
    # specialisation): do that before timing, with the all-ones mask the buffer starts with.
    sample_tokens(runner.run(ids, pos, meta), **params, bitmask=mask_gpu)
    loop(False)
    free_ms = loop(False)[0]
    cold_ms, cold_fill, cold_accept = loop(True)
    for m in matchers:
        m.reset()
    for t in texts:
        t.clear()
    steady_ms, fill_ms, accept_ms = loop(True)
    free_again_ms = loop(False)[0]  # the unconstrained baseline again, after: drift shows as a difference
    base = (free_ms + free_again_ms) / 2
    return dict(free_ms=free_ms, free_again_ms=free_again_ms, constrained_ms=steady_ms, overhead=steady_ms / base - 1,
                fill_ms_per_step=fill_ms, accept_ms_per_step=accept_ms, cold_constrained_ms=cold_ms,
                cold_overhead=cold_ms / base - 1, cold_fill_ms_per_step=cold_fill,
                cold_accept_ms_per_step=cold_accept, compile_s=compile_s,
                completed_valid_json=counts["valid"], completed=counts["completed"], rejected_tokens=counts["rejected"])


def _advance(matchers, tokens: list[int], vocab, texts, counts) -> None:
    """Accept each request's sampled token; a finished request checks its output and starts over."""
    eos = matchers[0].grammar.tokenizer.eos_token_ids if matchers else ()
    for i, tid in enumerate(tokens):
        counts["rejected"] += not matchers[i].accept_token(tid)
        if tid not in eos:
            texts[i].append(vocab[tid])
        if matchers[i].is_terminated():  # after EOS, or once nothing but EOS can follow
            counts["completed"] += 1
            counts["valid"] += _is_valid(b"".join(texts[i]))
            texts[i].clear()
            matchers[i].reset()


def _is_valid(raw: bytes) -> bool:
    """An independent check of a finished output: JSON that ``jsonschema`` validates against SCHEMA."""
    import jsonschema
    try:
        return jsonschema.Draft202012Validator(SCHEMA).is_valid(json.loads(raw.decode("utf-8")))
    except ValueError:
        return False


def _greedy_tokens(model, device, prompt: list[int], steps: int) -> list[int]:
    cfg = model.config
    kv = KVCache(num_layers=cfg.num_layers, num_slots=len(prompt) + steps + 1, num_kv_heads=cfg.num_kv_heads,
                 head_dim=cfg.head_dim, dtype=torch.float32, device=device)
    table = torch.arange(len(prompt) + steps + 1, dtype=torch.int32, device=device)[None, :]
    tokens, out = list(prompt), []
    for _ in range(steps):
        q_len = len(prompt) if not out else 1
        n = len(tokens)
        meta = AttentionMetadata.build([n], [q_len], table[:, :n], device=device)
        ids = torch.tensor(tokens[n - q_len:], device=device)
        pos = torch.arange(n - q_len, n, device=device)
        logits = model.compute_logits(model.forward(ids, pos, meta=meta, kv_cache=kv)[-1:])
        out.append(int(logits.argmax(-1)))
        tokens.append(out[-1])
    return out


def triton_vs_cpu_greedy(*, steps: int) -> dict:
    """SmolLM2-135M shapes, one set of random fp32 weights: Triton GPU path vs torch CPU path, greedy."""
    cfg = SHAPES["smollm2-135m"]
    cpu = LlamaForCausalLM(cfg, ops=TORCH_OPS, attn_backend="torch", device="cpu", dtype=torch.float32)
    random_init(cpu, seed=1)
    gpu = LlamaForCausalLM(cfg, ops=triton_ops(), attn_backend="triton", device="cuda", dtype=torch.float32)
    gpu.load_state_dict({k: v.cuda() for k, v in cpu.state_dict().items()})
    prompt = torch.randint(0, cfg.vocab_size, (24,), generator=torch.Generator().manual_seed(2)).tolist()
    a, b = _greedy_tokens(cpu, "cpu", prompt, steps), _greedy_tokens(gpu, "cuda", prompt, steps)
    same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), steps)
    return dict(steps=steps, identical_prefix=same, equal=a == b)

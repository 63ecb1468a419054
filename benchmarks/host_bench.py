"""Host time of the engine's step loop, without a GPU: the real ``Engine`` (scheduler, padded graph layout,
grammar manager, output processing, the engine process's delta encoding and the server's decoding and SSE
chunks) around a model and a sampler that stand in for the device.

On a GPU the host's work for a step hides behind the device only if it is shorter than the device's step;
this measures that work, split by phase, at the shapes the serving benchmark runs (e.g. 32 constrained + 32
free rows). The stand-in model returns fixed logits from the CUDA-graph runner's padded path (replayed
eagerly, so the host-side layout, staging and slot-table work are the real ones); the stand-in sampler picks a
random token the row's grammar mask allows. Their time is the "device" time and is not counted; times are
the step thread's CPU time (a loaded machine's waits for a core are left out)::

    PYTHONPATH=. python benchmarks/host_bench.py --free 32 --constrained 32 --steps 64

Phases (ms a step, medians): schedule, launch (inputs, layout, slot table; no forward), update (read the last
step's tokens, accept them in the grammar, detokenize, stop checks, snapshots), fill (grammar masks), sample
(sampling tensors; no kernel), encode (the engine process's deltas and their pickling), server (unpickle,
rebuild the snapshots, one SSE chunk an output).
"""
from __future__ import annotations

import argparse
import json
import pickle
import statistics
import time
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import torch

from benchmarks.engine_bench import ARRAY_SCHEMA
from lightllm_struct.engine.cuda_graphs import CUDAGraphRunner
from lightllm_struct.engine.graph_inputs import capture_sizes, tokens_per_seq_sizes
from lightllm_struct.engine.kv_cache import SlotAllocator
from lightllm_struct.engine.output_delta import DeltaDecoder, DeltaEncoder
from lightllm_struct.llm import LLM
from lightllm_struct.request import Constraint, Request, SamplingParams

# CPU time of this thread, not wall time: on a loaded machine the wall clock also counts the time the OS gave
# other processes, which is no part of the step's cost.
now = time.thread_time
MAX_TOKENS = 4096  # far: budget-aware masks stay out of the way, as in engine_bench --max-tokens 4096


class DeviceClock:
    """Seconds spent in the stand-ins for the device (subtracted from the phases that call them)."""

    def __init__(self) -> None:
        self.spent = 0.0

    def timed(self, fn):
        def run(*args, **kwargs):
            start = now()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent += now() - start
        return run


class StandInModel:
    """``forward`` and ``compute_logits`` of the right shapes, doing nothing (the GPU's part)."""

    def __init__(self, vocab_size: int, rows: int) -> None:
        self.config = SimpleNamespace(vocab_size=vocab_size)
        self._logits = torch.zeros(rows, vocab_size)

    def forward(self, input_ids, positions, *, meta, kv_cache, attn_backend=None):
        return input_ids[:, None].float()

    def compute_logits(self, hidden):
        return self._logits[:hidden.shape[0]]


class StandInSampler:
    """A random token a row's mask allows (a free row: any of the first 1,000 ids past the specials)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, logits, params, bitmask=None):
        n = logits.shape[0]
        tokens = self.rng.integers(3, 1003, size=n)
        if bitmask is not None:
            words = bitmask[:n].numpy()
            for i in range(n):
                row = words[i]
                if (row == -1).all():
                    continue
                allowed = np.flatnonzero(np.unpackbits(row.view(np.uint8), bitorder="little"))
                tokens[i] = allowed[self.rng.integers(len(allowed))]
        return torch.from_numpy(tokens)


def install_stand_ins(engine, clock: DeviceClock, *, max_num_seqs: int, tokens_per_seq: int, slots: int) -> None:
    """Swap the engine's model and sampler for the stand-ins, behind the padded graph layout."""
    vocab = engine.model_config.vocab_size
    model = StandInModel(vocab, max_num_seqs * tokens_per_seq)
    model.forward, model.compute_logits = clock.timed(model.forward), clock.timed(model.compute_logits)
    graphs = CUDAGraphRunner(model, engine.kv_cache, scratch_slot=engine.kv_cache.num_slots - 1,
                             max_context=engine.max_model_len, batch_sizes=capture_sizes(max_num_seqs),
                             tokens_per_seq=tokens_per_seq_sizes(tokens_per_seq), eager=True)
    graphs.capture()
    engine.runner.model, engine.runner.graphs = model, graphs
    engine.scheduler.max_decode_tokens = graphs.max_tokens_per_seq
    engine.sampler = clock.timed(StandInSampler())
    engine.overlap = True
    # The stand-in keeps no KV: a pool as large as the requests' budgets (admission reserves for max_tokens)
    # costs only its free list here, where real buffers of that size would not fit the host's memory.
    pool = SlotAllocator(slots)
    engine.allocator = engine.scheduler.allocator = pool
    if engine.prefix_cache is not None:
        engine.prefix_cache.allocator = pool


def instrument(engine, clock: DeviceClock, phases: dict[str, float]) -> None:
    """Wrap each phase of ``Engine.step`` so its host time (device stand-ins excluded) adds to ``phases``."""

    def wrap(owner, name: str, phase: str) -> None:
        fn = getattr(owner, name)

        def run(*args, **kwargs):
            device, start = clock.spent, now()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[phase] += now() - start - (clock.spent - device)
        setattr(owner, name, run)

    wrap(engine.scheduler, "schedule", "schedule")
    wrap(engine.runner, "launch", "launch")
    wrap(engine, "_update_and_stream", "update")
    wrap(engine.grammar, "fill_bitmask", "fill")
    wrap(engine, "_sample", "sample")


def server_side(message: bytes, decoder: DeltaDecoder, sent: dict[str, int]) -> int:
    """The server's part of one step's message: unpickle, rebuild the snapshots, one SSE chunk each."""
    from lightllm_struct.server.protocol import ChatChunkChoice, ChatCompletionChunk, ChatDelta
    from lightllm_struct.server.streaming import sse_event

    _, deltas = pickle.loads(message)
    size = 0
    for delta, _error in deltas:
        out = decoder.decode(delta)
        text = out.text[sent.get(out.request_id, 0):]
        sent[out.request_id] = len(out.text)
        chunk = ChatCompletionChunk(id="chatcmpl-x", created=0, model="m", choices=[
            ChatChunkChoice(index=0, delta=ChatDelta(content=text or None), finish_reason=None)])
        size += len(sse_event(chunk))
    return size


def run(llm: LLM, *, free: int, constrained: int, steps: int, prompt_len: int, clock: DeviceClock) -> dict:
    engine = llm.engine
    phases: dict[str, float] = defaultdict(float)
    instrument(engine, clock, phases)
    sampling = SamplingParams(temperature=0.7, max_tokens=MAX_TOKENS, ignore_eos=True, seed=1)
    ids = []
    pairs = min(free, constrained)  # alternate free and constrained rows, then the rest of the larger kind
    for i in range(free + constrained):
        c = i % 2 == 1 if i < 2 * pairs else constrained > free
        prompt = [(17 * i + 5 * j) % 1000 + 3 for j in range(prompt_len)]
        ids.append(f"r{i}")
        engine.add_request(Request(prompt_token_ids=prompt, sampling=sampling, request_id=ids[-1],
                                   constraint=Constraint("json_schema", ARRAY_SCHEMA) if c else None))
    encoder, decoder, sent = DeltaEncoder(), DeltaDecoder(), {}
    rows, step = [], 0
    while engine.has_unfinished():
        if step == steps + 4:
            for rid in ids:
                engine.abort_request(rid)
        phases.clear()
        device, start = clock.spent, now()
        outs = engine.step()
        t_step = now() - start - (clock.spent - device)
        start = now()
        message = pickle.dumps(("outputs", [(encoder.encode(o), None) for o in outs]), protocol=5)
        t_encode = now() - start
        start = now()
        server_side(message, decoder, sent)
        t_server = now() - start
        if 4 <= step < steps + 4 and len(outs) == free + constrained:
            rows.append(dict(phases, step=t_step, encode=t_encode, server=t_server, message_bytes=len(message)))
        step += not engine.grammar.num_pending  # steps count once every grammar compiled (a cold one takes s)
    keys = ["step", "schedule", "launch", "update", "fill", "sample", "encode", "server"]
    med = {k: statistics.median(r.get(k, 0.0) for r in rows) * 1e3 for k in keys} if rows else {}
    med["other"] = med.get("step", 0) - sum(med.get(k, 0) for k in keys[1:6])
    return dict(free=free, constrained=constrained, steps_timed=len(rows),
                message_bytes=statistics.median(r["message_bytes"] for r in rows) if rows else 0,
                **{f"{k}_ms": round(v, 3) for k, v in med.items()})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="model folder or GGUF (default: the default model)")
    parser.add_argument("--free", type=int, default=32)
    parser.add_argument("--constrained", type=int, default=32)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--tokens-per-seq", type=int, default=4, help="multi-token graphs (jump-forward)")
    parser.add_argument("--jump-forward", action="store_true")
    parser.add_argument("--profile", type=int, default=0, help="print the N costliest functions (own time)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    batch = args.free + args.constrained
    llm = LLM(args.model, device="cpu", max_num_seqs=batch, enable_jump_forward=args.jump_forward,
              num_kv_slots=max(batch * (args.prompt_len + args.steps + 16), args.prompt_len + MAX_TOKENS) + 64,
              max_num_batched_tokens=8192,
              max_model_len=args.prompt_len + MAX_TOKENS + 8)
    clock = DeviceClock()
    install_stand_ins(llm.engine, clock, max_num_seqs=batch, tokens_per_seq=args.tokens_per_seq,
                      slots=batch * (args.prompt_len + MAX_TOKENS + 16))
    try:
        run(llm, free=min(args.free, 4), constrained=min(args.constrained, 4), steps=8,
            prompt_len=args.prompt_len, clock=clock)  # warm: the grammar compiles, first masks
        if args.profile:
            import cProfile
            import pstats
            profile = cProfile.Profile()
            result = profile.runcall(run, llm, free=args.free, constrained=args.constrained, steps=args.steps,
                                     prompt_len=args.prompt_len, clock=clock)
            pstats.Stats(profile).sort_stats("tottime").print_stats(r"lightllm_struct|torch|tokenizers|pickle|pydantic", args.profile)
        else:
            result = run(llm, free=args.free, constrained=args.constrained, steps=args.steps,
                         prompt_len=args.prompt_len, clock=clock)
    finally:
        llm.engine.shutdown()
    result["jump_forward"] = args.jump_forward
    print(json.dumps(result), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()

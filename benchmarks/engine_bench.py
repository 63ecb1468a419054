"""Engine-level decode benchmark: the real ``Engine.step`` (scheduler, CUDA graphs, grammar manager, sampling
kernel), free vs JSON-schema constrained, on a random-weight model of a real shape.

``gpu_bench.py`` times the decode step itself (graph replay + sampler, host grammar work overlapped); this
times what a server's step loop really costs per step, Python scheduling included. Run on a CUDA machine:

    PYTHONPATH=. python benchmarks/engine_bench.py --tokenizer-dir DIR --shape llama-3.2-1b --batch 32
    PYTHONPATH=. python benchmarks/engine_bench.py --tokenizer-dir DIR --batches 1,32,128,256 --jump-forward off
    PYTHONPATH=. python benchmarks/engine_bench.py --tokenizer-dir DIR --shape llama-3.2-1b --ttft

A step's time is start to start of consecutive ``Engine.step`` calls with no device sync between them (the
overlapped loop's real period, host and device together); ``median_call_ms`` is the call alone.

``--ttft`` times, in a fresh engine after the start-up warm-up the server runs before it reports ready
(``engine/warmup.py``: compile workers started, the grammar machinery and kernels warmed), the first token
of: the process's first constrained request, then requests with schemas the engine has not seen, then
unconstrained requests.

``DIR`` holds an HF ``tokenizer.json`` (+ ``tokenizer_config.json``); the model takes that tokenizer's
vocabulary size, so its grammar masks are real ones over that vocabulary.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.gpu_bench_parts import SCHEMA, SHAPES
from lightllm_struct.engine.warmup import warm_up
from lightllm_struct.llm import LLM
from lightllm_struct.request import Constraint, Request, SamplingParams

# An array of at least 8 of the benchmark objects (over 200 tokens): a request cannot finish within the timed
# steps, so the batch stays whole, and it walks through every part of the object again and again.
ARRAY_SCHEMA = {"type": "array", "items": SCHEMA, "minItems": 8}


def build_model_dir(shape: str, tokenizer_dir: Path, out: Path, *, device: str) -> Path:
    """Random bf16 weights of ``shape`` with the tokenizer's vocabulary, saved as an HF folder."""
    import transformers
    from tokenizers import Tokenizer

    cfg = SHAPES[shape]
    vocab = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")).get_vocab_size()
    hcfg = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim, rope_theta=cfg.rope_theta, tie_word_embeddings=cfg.tie_word_embeddings,
        max_position_embeddings=8192, eos_token_id=2, bos_token_id=1)
    with torch.device(device):
        model = transformers.LlamaForCausalLM(hcfg).to(torch.bfloat16)
    model.save_pretrained(out)
    del model
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if (tokenizer_dir / name).is_file():
            shutil.copy(tokenizer_dir / name, out)
    return out


def run_steps(llm: LLM, *, batch: int, steps: int, constrained: bool, prompt_len: int,
              max_tokens: int | None = None) -> dict:
    """Start ``batch`` requests together and time every engine step until they finish.

    ``max_tokens`` above ``steps`` gives each request a budget it does not reach (budget-aware masks stay
    out of the way, as for most real requests); the requests are aborted after ``steps`` decode steps.
    """
    engine = llm.engine
    sampling = SamplingParams(temperature=0.7, max_tokens=max_tokens or steps, ignore_eos=not constrained, seed=1)
    for i in range(batch):
        prompt = [(17 * i + 5 * j) % 1000 + 3 for j in range(prompt_len)]  # distinct prompts: no prefix reuse
        engine.add_request(Request(prompt_token_ids=prompt, sampling=sampling, request_id=f"{constrained}-{i}",
                                   constraint=Constraint("json_schema", ARRAY_SCHEMA) if constrained else None))
    times, starts, produced, errors = [], [], 0, 0
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    while engine.has_unfinished():
        if len(times) == steps + 2:
            for i in range(batch):
                engine.abort_request(f"{constrained}-{i}")
        # No device sync between steps: the overlapped loop keeps one step queued, and a sync here would
        # time the host and the device one after the other instead of what a server sees.
        t = time.perf_counter()
        starts.append(t)
        outs = engine.step()
        times.append(time.perf_counter() - t)
        for out in outs:
            produced += out.finished and len(out.token_ids)
            errors += out.finished and out.error is not None
    decode = times[2:]  # the first steps prefill (after the grammar compile)
    periods = [b - a for a, b in zip(starts[2:], starts[3:steps + 3])]  # start to start: the step's real time
    # With jump-forward a step may append several forced tokens per request: tokens/s compares fairly.
    return dict(median_step_ms=statistics.median(periods or decode) * 1e3,
                mean_step_ms=statistics.fmean(periods or decode) * 1e3,
                median_call_ms=statistics.median(decode) * 1e3,
                steps=len(times), tokens=produced, tokens_per_s=produced / sum(times), errors=errors)


def first_token_s(llm: LLM, *, constraint: Constraint | None, prompt_len: int, tag: str) -> float:
    """Seconds from ``add_request`` to the step that returns the request's first token."""
    engine = llm.engine
    prompt = [(7 * len(tag) + 11 * j) % 1000 + 3 for j in range(prompt_len)]
    engine.add_request(Request(prompt_token_ids=prompt, sampling=SamplingParams(temperature=0.7, max_tokens=1, seed=1),
                               request_id=tag, constraint=constraint))
    start = time.perf_counter()
    while engine.has_unfinished():
        if any(out.request_id == tag and out.token_ids for out in engine.step()):
            break
    return time.perf_counter() - start


def new_schema(i: int) -> dict:
    """A schema no earlier request had: an object whose property names carry ``i``."""
    return {"type": "object", "properties": {f"name_{i}": {"type": "string", "maxLength": 20 + i},
                                             f"count_{i}": {"type": "integer"}, f"tags_{i}": {
                                                 "type": "array", "items": {"type": "string"}}},
            "required": [f"name_{i}"]}


def ttft_rows(llm: LLM, *, prompt_len: int, repeats: int = 5) -> list[dict]:
    rows = [dict(kind="first constrained request of the process", seconds=first_token_s(
        llm, constraint=Constraint("json_schema", new_schema(0)), prompt_len=prompt_len, tag="first"))]
    for i in range(1, repeats + 1):
        rows.append(dict(kind="new schema", seconds=first_token_s(
            llm, constraint=Constraint("json_schema", new_schema(i)), prompt_len=prompt_len, tag=f"new-{i}")))
        rows.append(dict(kind="unconstrained", seconds=first_token_s(
            llm, constraint=None, prompt_len=prompt_len, tag=f"free-{i}")))
    return rows


def _maybe_profiled(top: int, fn):
    """Run ``fn``, under cProfile when ``top`` > 0 (printing its ``top`` costliest functions by own time)."""
    if not top:
        return fn()
    import cProfile
    import pstats
    profile = cProfile.Profile()
    result = profile.runcall(fn)
    pstats.Stats(profile).sort_stats("tottime").print_stats(top)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokenizer-dir", type=Path, required=True)
    parser.add_argument("--shape", default="llama-3.2-1b", choices=sorted(SHAPES))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", default=None,
                        help="comma-separated batch sizes run by one engine (max_num_seqs = the largest)")
    parser.add_argument("--jump-forward", default="both", choices=("both", "on", "off"))
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=None,
                        help="each request's budget (default --steps: budget-aware masks bind at every step)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--profile", type=int, default=0, help="print the N costliest functions of each run")
    parser.add_argument("--ttft", action="store_true", help="time first tokens (new schema, unconstrained)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model_dir(args.shape, args.tokenizer_dir, Path(tmp), device=args.device)
        if args.ttft:
            llm = LLM(str(model_dir), device=args.device, max_num_seqs=args.batch)
            try:
                rows.append(dict(shape=args.shape, kind="start-up warm-up (as the server runs it)",
                                 seconds=warm_up(llm.engine)))
                print(json.dumps(rows[-1]), flush=True)
                for row in ttft_rows(llm, prompt_len=args.prompt_len):
                    rows.append(dict(shape=args.shape, **row))
                    print(json.dumps(rows[-1]), flush=True)
            finally:
                llm.engine.shutdown()
            model_dir = None
        batches = [int(b) for b in args.batches.split(",")] if args.batches else [args.batch]
        modes = {"both": (True, False), "on": (True,), "off": (False,)}[args.jump_forward]
        for jump_forward in modes if model_dir is not None else ():
            top = max(batches)
            llm = LLM(str(model_dir), device=args.device, max_num_seqs=top, enable_jump_forward=jump_forward,
                      num_kv_slots=top * (args.prompt_len + max(args.steps, args.max_tokens or 0) + 8) + 64)
            try:
                warm_up(llm.engine)  # as the server does before it reports ready: no pass waits for a compile
                for batch in batches:
                    run_steps(llm, batch=batch, steps=8, constrained=True, prompt_len=args.prompt_len)  # warm-up
                    run_steps(llm, batch=batch, steps=8, constrained=False, prompt_len=args.prompt_len)
                    for constrained in (False, True, False, True):
                        res = _maybe_profiled(args.profile, lambda: run_steps(
                            llm, batch=batch, steps=args.steps, constrained=constrained, prompt_len=args.prompt_len,
                            max_tokens=args.max_tokens))
                        rows.append(dict(shape=args.shape, batch=batch, jump_forward=jump_forward,
                                         max_tokens=args.max_tokens or args.steps,
                                         constrained=constrained, **res))
                        print(json.dumps(rows[-1]), flush=True)
            finally:
                llm.engine.shutdown()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(device=torch.cuda.get_device_name() if args.device == "cuda" else args.device, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()

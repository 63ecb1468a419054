"""Tensor parallelism on GPUs (issue 7): TP=2 vs TP=1 greedy equality, decode step times, all-reduce bandwidth,
a JSON-schema constrained batch at TP=2. Run on a machine with >= 2 CUDA GPUs from the repo root:

    NCCL_NVLS_ENABLE=0 PYTHONPATH=. python benchmarks/tp_gpu_bench.py --tokenizer-dir DIR --out tp.json

The model is the Llama-3.2-1B shape with random bf16 weights and the tokenizer of DIR (its vocabulary), as in
``engine_bench.py``; step times are the real ``Engine.step`` (TP steps are not captured in CUDA graphs).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import jsonschema
import torch
import torch.multiprocessing as mp

from benchmarks.engine_bench import ARRAY_SCHEMA, build_model_dir, run_steps
from benchmarks.gpu_bench_parts import SCHEMA
from lightllm_struct.llm import LLM
from lightllm_struct.request import Constraint, SamplingParams

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time", "1, 2, 3,", "JSON:", "Hello"]


def _all_reduce_worker(rank: int, world: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.cuda.set_device(rank)
    torch.distributed.init_process_group("nccl", rank=rank, world_size=world)
    for mib in (1, 16, 256):
        x = torch.ones(mib * 2 ** 19, dtype=torch.bfloat16, device="cuda")  # mib MiB of bf16
        for _ in range(5):
            torch.distributed.all_reduce(x)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(20):
            torch.distributed.all_reduce(x)
        torch.cuda.synchronize()
        sec = (time.perf_counter() - t) / 20
        if rank == 0:  # bus bandwidth as nccl-tests defines it: 2 (n-1)/n * bytes / time
            out[f"{mib}MiB"] = dict(ms=sec * 1e3, busbw_gb_s=2 * (world - 1) / world * x.numel() * 2 / sec / 1e9)
    torch.distributed.destroy_process_group()


def all_reduce_bandwidth(world: int) -> dict:
    out = mp.Manager().dict()
    mp.spawn(_all_reduce_worker, args=(world, 29517, out), nprocs=world)
    return dict(out)


def greedy_and_constrained(model_dir: Path, tp: int, *, dtype: str = "auto", greedy_only: bool = False) -> dict:
    llm = LLM(str(model_dir), device="cuda", tensor_parallel_size=tp, max_num_seqs=32, num_kv_slots=32 * 400,
              dtype=dtype)
    try:
        greedy = [o.token_ids for o in llm.generate(PROMPTS, SamplingParams(temperature=0, max_tokens=48,
                                                                            ignore_eos=True))]
        if greedy_only:
            return dict(greedy=greedy)
        outs = llm.generate(PROMPTS, SamplingParams(temperature=0.7, max_tokens=200, seed=3),
                            constraints=Constraint("json_schema", SCHEMA))
        valid = 0
        for o in outs:
            try:
                valid += jsonschema.Draft202012Validator(SCHEMA).is_valid(json.loads(o.text))
            except ValueError:
                pass
        steps = {b: run_steps(llm, batch=b, steps=32, constrained=False, prompt_len=64) for b in (1, 32)}
        steps["32_constrained"] = run_steps(llm, batch=32, steps=32, constrained=True, prompt_len=64)
        return dict(greedy=greedy, constrained_valid=valid, constrained_total=len(outs),
                    finish=[o.finish_reason for o in outs], steps=steps)
    finally:
        llm.engine.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokenizer-dir", type=Path, required=True)
    parser.add_argument("--out", default=None)
    parser.add_argument("--dtype", default="auto", help="float32 for the greedy-equality check (bf16 sums split "
                        "over ranks round differently, and random weights make near-ties)")
    parser.add_argument("--greedy-only", action="store_true")
    args = parser.parse_args()
    res = dict(devices=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
    if not args.greedy_only:
        res["all_reduce"] = all_reduce_bandwidth(2)
    print(json.dumps(res), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model_dir("llama-3.2-1b", args.tokenizer_dir, Path(tmp), device="cuda")
        for tp in (1, 2):
            res[f"tp{tp}"] = greedy_and_constrained(model_dir, tp, dtype=args.dtype, greedy_only=args.greedy_only)
            print(json.dumps({k: v for k, v in res[f"tp{tp}"].items() if k != "greedy"}), flush=True)
    res["greedy_equal"] = [a == b for a, b in zip(res["tp1"]["greedy"], res["tp2"]["greedy"])]
    res["greedy_common_prefix"] = [next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), len(a))
                                   for a, b in zip(res["tp1"]["greedy"], res["tp2"]["greedy"])]
    print(json.dumps({k: res[k] for k in ("greedy_equal", "greedy_common_prefix")}), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

"""Model-level GPU benchmark: random-weight Llama models of real shapes, decode and prefill beside their floors.

Run on a CUDA machine from the repo root: ``PYTHONPATH=. python benchmarks/gpu_bench.py --out r.json``.
Decode steps (forward + logits + sampling kernel) are replayed from CUDA graphs. Floors: decode = (weight bytes
+ KV bytes read) / measured copy bandwidth; prefill = FLOPs / measured bf16 matmul rate. transformers'
``generate`` runs on the same random weights as the baseline, and the constrained run fills real JSON-schema
grammar masks (Llama 3 vocabulary from quicktok) on the CPU while the graph runs.
"""
from __future__ import annotations

import argparse
import json
import time
import traceback

import torch
import triton

from benchmarks.gpu_bench_parts import (
    SHAPES, build_model, constrained_decode, decode_case, hf_generate_ms_per_step, model_bytes,
    prefill_case, triton_vs_cpu_greedy,
)
from benchmarks.kernel_bench import ceilings

ROWS: list[dict] = []


def emit(**row) -> None:
    ROWS.append(row)
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)


def guarded(fn) -> None:
    """Run one optional measurement; a failure is reported as a row instead of ending the whole run."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - a benchmark keeps going and records what broke
        traceback.print_exc()
        emit(kind="error", error=f"{type(exc).__name__}: {exc}"[:300])


def run_shape(name: str, bw: float, flops: float, args) -> None:
    cfg = SHAPES[name]
    model, kv, runner = build_model(cfg, max_batch=128, max_context=4097,
                                    kv_budget_bytes=args.kv_budget_gb * 2 ** 30)
    weight_bytes = model_bytes(model, cfg)
    for batch in (1, 8, 32, 128) if "decode" in args.parts else ():
        for ctx in (512, 4096):
            res = decode_case(model, kv, runner, cfg, batch=batch, ctx=ctx)
            if res is None:
                emit(model=name, kind="decode", batch=batch, ctx=ctx, skipped="KV cache does not fit")
                continue
            kv_bytes = 2 * cfg.num_layers * batch * ctx * cfg.num_kv_heads * cfg.head_dim * 2
            floor = (weight_bytes + kv_bytes) / bw * 1e3
            emit(model=name, kind="decode", batch=batch, ctx=ctx, graph_ms=res["graph_ms"], eager_ms=res["eager_ms"],
                 floor_ms=floor, x_floor=res["graph_ms"] / floor, graph_vs_eager_maxdiff=res["maxdiff"])
    for batch in args.constrained_batches if "constrained" in args.parts else ():
        guarded(lambda: emit(model=name, kind="constrained_decode", batch=batch, ctx=512, **constrained_decode(
            model, kv, runner, cfg, batch=batch, ctx=512, steps=args.constrained_steps)))
    for seq in (1024, 8192) if "prefill" in args.parts else ():
        ms, work = prefill_case(model, kv, cfg, seq=seq)
        emit(model=name, kind="prefill", seq=seq, ms=ms, tokens_per_s=seq / ms * 1e3, floor_ms=work / flops * 1e3,
             x_floor=ms / (work / flops * 1e3))
    del model, kv, runner
    torch.cuda.empty_cache()
    if "hf" in args.parts:
        guarded(lambda: emit(model=name, kind="hf_generate", batch=1, ctx=512,
                             ms_per_step=hf_generate_ms_per_step(cfg, ctx=512)))
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    parser.add_argument("--shapes", default="llama-3.2-1b,llama-3-8b")
    parser.add_argument("--kv-budget-gb", type=float, default=40.0)
    parser.add_argument("--parts", default="decode,constrained,prefill,hf",
                        help="comma-separated subset of decode,constrained,prefill,hf")
    parser.add_argument("--constrained-batches", default="1,8,32,128",
                        type=lambda s: tuple(int(x) for x in s.split(",")))
    parser.add_argument("--constrained-steps", type=int, default=64)
    parser.add_argument("--equivalence", action="store_true")
    args = parser.parse_args()
    args.parts = set(args.parts.split(","))
    print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, time.strftime("%Y-%m-%d %H:%M"),
          flush=True)
    if args.equivalence:
        guarded(lambda: emit(kind="gpu_vs_cpu_greedy", **triton_vs_cpu_greedy(steps=64)))
    bw, flops = ceilings()
    emit(kind="ceilings", copy_tb_s=bw / 1e12, matmul_tflop_s=flops / 1e12)
    for name in args.shapes.split(","):
        run_shape(name, bw, flops, args)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(device=torch.cuda.get_device_name(), rows=ROWS), f, indent=1)


if __name__ == "__main__":
    main()

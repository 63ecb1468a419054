"""The engine's decode step with each kernel backend: same random weights, same greedy tokens, time per step.

Three variants of ``Engine`` on the same weights (seeded, generated on the device):

* ``triton``: ``EngineConfig(kernels="triton")``, what ``"auto"`` now picks on CUDA: Triton attention, RMSNorm,
  RoPE, SiLU-and-mul and sampling; decode steps replay CUDA graphs.
* ``before``: what the engine ran on CUDA before issue 12: Triton attention and sampling, CUDA graphs, but the
  torch RMSNorm/RoPE/SiLU (``TORCH_OPS``).
* ``torch``: ``kernels="torch"``: every op in torch; eager (torch attention cannot be captured).

First a check in float32: each variant decodes the same prompts greedily and the tokens must agree. Then the
timing in ``--dtype`` (bf16): ``batch`` requests of ``ctx`` prompt tokens decode together; a step is one
``Engine.step()`` (schedule, forward, sample, update), timed on the host over ``--steps`` steps after warm-up.

On a CUDA machine, from the repo root::

    PYTHONPATH=. python benchmarks/kernels_backend_bench.py --out "$OUT/kernels_backend"

A CPU smoke run (tiny shape, Triton interpreter): ``TRITON_INTERPRET=1 PYTHONPATH=. python
benchmarks/kernels_backend_bench.py --device cpu --shapes tiny --batches 2 --ctx 16 --steps 3``.
Needs only what the engine needs (torch, triton, safetensors, tokenizers, numpy): no lark or jsonschema.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers

from benchmarks.gpu_bench_parts import SHAPES as GPU_SHAPES
from lightllm_struct.config import EngineConfig
from lightllm_struct.engine.engine import Engine
from lightllm_struct.models.config import ModelConfig
from lightllm_struct.models.llama import LlamaForCausalLM
from lightllm_struct.models.ops import TORCH_OPS, triton_ops
from lightllm_struct.request import Request, SamplingParams

SHAPES = {
    **GPU_SHAPES,  # llama-3.2-1b, llama-3-8b, smollm2-135m
    "tiny": ModelConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4,
                        num_kv_heads=2, head_dim=16, rope_theta=10000.0, max_position_embeddings=1024),
}
# variant -> (EngineConfig.kernels, the model's layer ops: None = the ones the engine's backends choose)
VARIANTS = {"triton": ("triton", None), "before": ("triton", "torch"), "torch": ("torch", None)}


def write_tokenizer(folder: Path, vocab_size: int) -> Path:
    """A word-level tokenizer with one word per model token (the engine only ever sees token ids here)."""
    tok = Tokenizer(models.WordLevel(vocab={f"w{i}": i for i in range(vocab_size)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "w1"}))
    return folder


@torch.no_grad()
def build(cfg: ModelConfig, variant: str, *, device: str, dtype: torch.dtype, seed: int):
    """The variant's model with seeded random weights (norms 1; the same tensors for every variant)."""
    kernels, ops = VARIANTS[variant]
    layer_ops = {"torch": TORCH_OPS, None: TORCH_OPS if kernels == "torch" else triton_ops()}[ops]
    model = LlamaForCausalLM(cfg, ops=layer_ops, attn_backend=kernels, device=device, dtype=dtype)
    gen = torch.Generator(device=device).manual_seed(seed)
    for name, p in model.named_parameters():
        if "norm" in name:
            p.fill_(1.0)
        else:  # std 0.08 (not 0.02): logits sharp enough that greedy choices are no near-ties
            p.copy_(torch.randn(p.shape, generator=gen, device=device, dtype=torch.float32).mul_(0.08).to(dtype))
    return kernels, model


def make_engine(cfg, variant, tok_dir, *, device, dtype, seed, max_batch, slots) -> Engine:
    kernels, model = build(cfg, variant, device=device, dtype=dtype, seed=seed)
    config = EngineConfig(device=device, dtype=str(dtype).removeprefix("torch."), kernels=kernels,
                          max_num_seqs=max_batch, max_num_batched_tokens=max(8192, max_batch),
                          num_kv_slots=slots, enable_prefix_caching=False, num_threads=4)
    return Engine(config, loaded=(model, cfg, tok_dir))


def prompts(cfg: ModelConfig, batch: int, length: int, seed: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, cfg.vocab_size, (batch, length), generator=gen).tolist()


def run(engine: Engine, ids: list[list[int]], max_tokens: int) -> tuple[list[list[int]], list[float]]:
    """Greedy outputs of every prompt and the host time of every step in which all of them decode."""
    params = SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True)
    reqs = [Request(prompt_token_ids=p, sampling=params) for p in ids]
    for r in reqs:
        engine.add_request(r)
    times: list[float] = []
    while engine.has_unfinished():
        decoding = all(r.output_token_ids for r in reqs)
        start = time.perf_counter()
        engine.step()
        if decoding and not any(r.status.finished for r in reqs):
            times.append(time.perf_counter() - start)
    return [r.output_token_ids for r in reqs], times


def check_greedy(cfg, tok_dir, args) -> dict:
    """float32 greedy tokens of each variant; ``equal`` when all agree (``first_divergence`` otherwise)."""
    ids = prompts(cfg, 4, 32, seed=1)
    outs = {}
    for variant in VARIANTS:
        engine = make_engine(cfg, variant, tok_dir, device=args.device, dtype=torch.float32, seed=args.seed,
                             max_batch=4, slots=4 * 80 + 64)
        outs[variant], _ = run(engine, ids, max_tokens=args.check_tokens)
        engine.shutdown()
        del engine
        release()
    ref = outs["torch"]
    result = {"equal": all(o == ref for o in outs.values()), "tokens": args.check_tokens}
    for variant, out in outs.items():
        for row, (a, b) in enumerate(zip(out, ref)):
            if a != b:
                step = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
                result.setdefault("first_divergence", {})[variant] = {"row": row, "step": step}
                break
    return result


def time_variant(cfg, variant, tok_dir, args) -> list[dict]:
    rows = []
    max_batch = max(args.batches)
    steps = args.warmup + args.steps
    engine = make_engine(cfg, variant, tok_dir, device=args.device, dtype=args.dtype, seed=args.seed,
                         max_batch=max_batch, slots=max_batch * (args.ctx + steps + 8) + 64)
    graphs = engine.runner.graphs is not None
    for batch in args.batches:
        _, times = run(engine, prompts(cfg, batch, args.ctx, seed=2), max_tokens=steps + 2)
        timed = times[args.warmup:]
        rows.append({"variant": variant, "batch": batch, "ctx": args.ctx, "cuda_graphs": graphs,
                     "ms_median": 1e3 * statistics.median(timed), "ms_mean": 1e3 * statistics.fmean(timed),
                     "steps": len(timed)})
        print(json.dumps(rows[-1]), flush=True)
    engine.shutdown()
    del engine
    release()
    return rows


def release() -> None:
    """Free the last engine's model: Engine gc.freeze()s what exists at its start, cycles included."""
    gc.unfreeze()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        print(f"after release: {torch.cuda.memory_allocated() / 2**30:.1f} GiB allocated", flush=True)


def markdown(results: dict) -> str:
    lines = [f"# Engine decode step by kernel backend ({results['device']}, {results['date']})", "",
             f"command: `{results['command']}`", ""]
    for shape, res in results["shapes"].items():
        lines += [f"## {shape}", "", f"float32 greedy tokens equal across variants: {res['greedy']['equal']} "
                  f"({res['greedy']['tokens']} tokens x 4 prompts) {res['greedy'].get('first_divergence', '')}", "",
                  "| batch | ctx | triton ms | before ms | torch ms | triton vs before | triton vs torch |",
                  "|---|---|---|---|---|---|---|"]
        by = {(r["variant"], r["batch"]): r for r in res["timing"]}
        for batch in sorted({r["batch"] for r in res["timing"]}):
            t, b, p = (by.get((v, batch), {}).get("ms_median", float("nan")) for v in ("triton", "before", "torch"))
            lines.append(f"| {batch} | {res['timing'][0]['ctx']} | {t:.3f} | {b:.3f} | {p:.3f} | {b / t:.2f}x | "
                         f"{p / t:.2f}x |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="folder for result.json and result.md")
    parser.add_argument("--shapes", default="llama-3.2-1b,llama-3-8b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--check-tokens", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    args.dtype = getattr(torch, args.dtype)
    results = {"device": torch.cuda.get_device_name() if args.device == "cuda" else args.device,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
               "command": "python " + " ".join(sys.argv), "shapes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes.split(","):
            cfg = SHAPES[shape]
            tok_dir = write_tokenizer(Path(tmp), cfg.vocab_size)
            greedy = check_greedy(cfg, tok_dir, args)
            print(shape, "greedy", json.dumps(greedy), flush=True)
            timing = [row for v in VARIANTS for row in time_variant(cfg, v, tok_dir, args)]
            results["shapes"][shape] = {"greedy": greedy, "timing": timing}
    text = markdown(results)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(json.dumps(results, indent=1))
        (out / "result.md").write_text(text + "\n")


if __name__ == "__main__":
    main()

"""GPU microbenchmarks of the Triton kernels beside their torch references and the physical floor.

Run on a CUDA machine: ``python benchmarks/kernel_bench.py [--out results.json]``. Every figure is the median
of ``triton.testing.do_bench``; the floor is bytes moved / measured copy bandwidth (or FLOPs / measured matmul
rate for prefill attention), both measured in the same run.
"""
from __future__ import annotations

import argparse
import itertools
import json

import torch
import torch.nn.functional as F
import triton

from lightllm_struct.kernels import reference
from lightllm_struct.kernels.activation import silu_and_mul
from lightllm_struct.kernels.attention_decode import decode_attention
from lightllm_struct.kernels.attention_prefill import prefill_attention, store_kv
from lightllm_struct.kernels.norm import add_rms_norm
from lightllm_struct.kernels.rope import apply_rotary
from lightllm_struct.kernels.sampling import sample_tokens

DEV = "cuda"
BF16 = torch.bfloat16
ROWS: list[dict] = []


def ms(fn) -> float:
    return triton.testing.do_bench(fn, warmup=20, rep=80, return_mode="median")


def record(name: str, triton_ms: float, torch_ms: float | None, floor_ms: float, **extra) -> None:
    ROWS.append(dict(name=name, triton_ms=triton_ms, torch_ms=torch_ms, floor_ms=floor_ms, **extra))
    t = f"{torch_ms:8.4f}" if torch_ms is not None else "     n/a"
    print(f"{name:44s} triton {triton_ms:8.4f} ms  torch {t} ms  floor {floor_ms:8.4f} ms  "
          f"x{triton_ms / floor_ms:5.2f} {extra if extra else ''}", flush=True)


def ceilings() -> tuple[float, float]:
    src = torch.empty(2 ** 30, dtype=torch.uint8, device=DEV).random_()
    dst = torch.empty_like(src)
    bw = 2 * src.numel() / (ms(lambda: dst.copy_(src)) * 1e-3)
    a = torch.randn(8192, 8192, device=DEV, dtype=BF16)
    b = torch.randn(8192, 8192, device=DEV, dtype=BF16)
    flops = 2 * 8192 ** 3 / (ms(lambda: a @ b) * 1e-3)
    print(f"copy bandwidth {bw / 1e12:.2f} TB/s, bf16 matmul {flops / 1e12:.0f} TFLOP/s", flush=True)
    return bw, flops


def _kv_case(batch, ctx, hkv=8, d=128):
    slots = batch * ctx + 16
    k_buf = torch.randn(slots, hkv, d, device=DEV, dtype=BF16)
    v_buf = torch.randn(slots, hkv, d, device=DEV, dtype=BF16)
    r2t = torch.randperm(slots, device=DEV)[:batch * ctx].view(batch, ctx).int()
    lens = torch.full((batch,), ctx, dtype=torch.int32, device=DEV)
    return k_buf, v_buf, r2t, lens


def torch_decode(q, k_buf, v_buf, r2t, ctx):
    keys = k_buf[r2t[:, :ctx].long()].transpose(1, 2)
    values = v_buf[r2t[:, :ctx].long()].transpose(1, 2)
    return F.scaled_dot_product_attention(q.unsqueeze(2), keys, values, enable_gqa=True).squeeze(2)


def bench_decode(bw: float) -> None:
    variants = list(itertools.product((32, 64, 128), (4, 8), (1, 2, 3)))
    for batch, ctx in itertools.product((1, 8, 32, 128), (512, 4096)):
        k_buf, v_buf, r2t, lens = _kv_case(batch, ctx)
        q = torch.randn(batch, 32, 128, device=DEV, dtype=BF16)
        ref = torch_decode(q, k_buf, v_buf, r2t, ctx)
        best = None
        for bn, nw, ns in variants:
            fn = lambda: decode_attention(q, k_buf, v_buf, r2t, lens, scale=128 ** -0.5, max_seq_len=ctx,  # noqa
                                          block_n=bn, num_warps=nw, num_stages=ns)
            err = float((fn().float() - ref.float()).norm() / ref.float().norm())
            assert err < 2e-2, (batch, ctx, bn, nw, ns, err)
            t = ms(fn)
            if best is None or t < best[0]:
                best = (t, dict(block_n=bn, num_warps=nw, num_stages=ns))
        default = ms(lambda: decode_attention(q, k_buf, v_buf, r2t, lens, scale=128 ** -0.5, max_seq_len=ctx))
        floor = (2 * batch * ctx * 8 * 128 * 2 + q.numel() * 4) / bw * 1e3
        record(f"decode_attn B={batch} ctx={ctx} (32/8/128)", default, ms(lambda: torch_decode(q, k_buf, v_buf, r2t, ctx)),
               floor, best_ms=best[0], best=best[1])


def bench_prefill(flops: float) -> None:
    for seq in (1024, 8192):
        k_buf, v_buf, r2t, lens = _kv_case(1, seq)
        q = torch.randn(seq, 32, 128, device=DEV, dtype=BF16)
        qsl = torch.tensor([0, seq], dtype=torch.int32, device=DEV)
        qt = q.transpose(0, 1).unsqueeze(0)
        kt = k_buf[r2t[0].long()].transpose(0, 1).unsqueeze(0)
        vt = v_buf[r2t[0].long()].transpose(0, 1).unsqueeze(0)
        torch_fn = lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, enable_gqa=True)  # noqa
        ref = torch_fn()[0].transpose(0, 1)
        best = None
        for bm, bn, nw, ns in itertools.product((64, 128), (32, 64), (4, 8), (2, 3)):
            fn = lambda: prefill_attention(q, k_buf, v_buf, r2t, lens, qsl, max_query_len=seq,  # noqa
                                           scale=128 ** -0.5, block_m=bm, block_n=bn, num_warps=nw, num_stages=ns)
            try:
                err = float((fn().float() - ref.float()).norm() / ref.float().norm())
            except Exception as exc:  # a variant may not fit shared memory
                print("  skip", bm, bn, nw, ns, type(exc).__name__)
                continue
            assert err < 2e-2, (seq, bm, bn, nw, ns, err)
            t = ms(fn)
            if best is None or t < best[0]:
                best = (t, dict(block_m=bm, block_n=bn, num_warps=nw, num_stages=ns))
        default = ms(lambda: prefill_attention(q, k_buf, v_buf, r2t, lens, qsl, max_query_len=seq, scale=128 ** -0.5))
        work = 4 * 32 * 128 * seq * (seq + 1) / 2
        record(f"prefill_attn S={seq} (32/8/128)", default, ms(torch_fn), work / flops * 1e3, best_ms=best[0],
               best=best[1], tflops_best=work / best[0] / 1e9)


def bench_elementwise(bw: float) -> None:
    t, h, inter = 4096, 4096, 14336
    x = torch.randn(t, h, device=DEV, dtype=BF16)
    r = torch.randn(t, h, device=DEV, dtype=BF16)
    w = torch.randn(h, device=DEV, dtype=BF16)
    record("add_rms_norm T=4096 H=4096", ms(lambda: add_rms_norm(x, r, w, 1e-5)),
           ms(lambda: reference.add_rms_norm(x, r, w, 1e-5)), 4 * x.numel() * 2 / bw * 1e3)
    gu = torch.randn(t, 2 * inter, device=DEV, dtype=BF16)
    record("silu_and_mul T=4096 I=14336", ms(lambda: silu_and_mul(gu)), ms(lambda: reference.silu_and_mul(gu)),
           3 * t * inter * 2 / bw * 1e3)
    qkv = torch.randn(t, 48, 128, device=DEV, dtype=BF16)
    q, k = qkv[:, :32], qkv[:, 32:40]
    cos, sin = torch.rand(t, 64, device=DEV), torch.rand(t, 64, device=DEV)
    record("rope T=4096 32/8/128", ms(lambda: apply_rotary(q, k, cos, sin)),
           ms(lambda: reference.apply_rotary(q, k, cos, sin)), (2 * 40 * 128 * 2 + 2 * 64 * 4) * t / bw * 1e3)
    kb = torch.randn(t * 2, 8, 128, device=DEV, dtype=BF16)
    vb = torch.randn_like(kb)
    slots = torch.randperm(t * 2, device=DEV)[:t]
    kn, vn = torch.randn(t, 8, 128, device=DEV, dtype=BF16), torch.randn(t, 8, 128, device=DEV, dtype=BF16)

    def torch_store():
        kb.index_copy_(0, slots, kn)
        vb.index_copy_(0, slots, vn)
    record("store_kv T=4096 8/128", ms(lambda: store_kv(kn, vn, kb, vb, slots)), ms(torch_store),
           4 * kn.numel() * 2 / bw * 1e3)


def bench_sampler(bw: float) -> None:
    from lightllm_struct.engine.sampler import SamplingTensors, sample as torch_sample
    vocab = 128256
    for batch in (1, 32, 128):
        logits = torch.randn(batch, vocab, device=DEV) * 3
        mask = torch.randint(-2 ** 31, 2 ** 31 - 1, (batch, (vocab + 31) // 32), dtype=torch.int32, device=DEV)
        for label, temp, top_k, top_p, use_mask in (("greedy", 0.0, 0, 1.0, False), ("temp", 0.8, 0, 1.0, False),
                                                    ("temp+mask", 0.8, 0, 1.0, True),
                                                    ("topk50+topp0.9+mask", 0.8, 50, 0.9, True)):
            p = SamplingTensors.from_lists(temperature=[temp] * batch, top_p=[top_p] * batch, top_k=[top_k] * batch,
                                           seed=list(range(batch)), step=[3] * batch, device=DEV)
            m = mask if use_mask else None
            fn = lambda: sample_tokens(logits, temperature=p.temperature, top_p=p.top_p, top_k=p.top_k,  # noqa
                                       seed=p.seed, step=p.step, bitmask=m)
            floor = (logits.numel() * 4 + (mask.numel() * 4 if use_mask else 0)) / bw * 1e3
            record(f"sample B={batch} {label}", ms(fn), ms(lambda: torch_sample(logits, p, m)), floor)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    parser.add_argument("--parts", default="elementwise,sampler,decode,prefill")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
    bw, flops = ceilings()
    for name, part in (("elementwise", bench_elementwise), ("sampler", bench_sampler), ("decode", bench_decode)):
        if name in parts:
            part(bw)
    if "prefill" in parts:
        bench_prefill(flops)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(device=torch.cuda.get_device_name(), copy_bw=bw, matmul_flops=flops, rows=ROWS), f,
                      indent=1)


if __name__ == "__main__":
    main()

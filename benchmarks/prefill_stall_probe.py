"""How long the steps of decoding requests get while a long prompt prefills beside them (in-process engine).

One or more requests decode (``ignore_eos``); once they run, a long prompt arrives. Every step is timed and its
shape recorded (decode rows, prefill tokens, the prefill's context). Reports the decoders' largest token gap, the
long request's time to first token, and the steps' prefill work. CPU, torch on the engine's thread count
(``EngineConfig.torch_threads``; the server sets 1 for its engine process on 2 cores: pass ``--threads 1``).

    python benchmarks/prefill_stall_probe.py --prompt-tokens 6000 --threads 1 [--engine-option NAME=VALUE ...]
"""
from __future__ import annotations

import argparse
import json
import time

from lightllm_struct.config import EngineConfig
from lightllm_struct.engine.engine import Engine
from lightllm_struct.request import Request, SamplingParams


def _option(text: str) -> tuple[str, object]:
    name, _, raw = text.partition("=")
    value: object = raw
    for cast in (int, float):
        try:
            value = cast(raw)
            break
        except ValueError:
            pass
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    return name, value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompt-tokens", type=int, default=6000)
    parser.add_argument("--decoders", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--engine-option", action="append", default=[], type=_option)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    config = EngineConfig(device="cpu", num_threads=args.threads, max_num_seqs=64, **dict(args.engine_option))
    engine = Engine(config)
    vocab = engine.model_config.vocab_size
    for i in range(args.decoders):
        engine.add_request(Request(request_id=f"d{i}", prompt_token_ids=[1 + i, 2, 3, 4, 5, 6, 7, 8],
                                   sampling=SamplingParams(max_tokens=400, ignore_eos=True)))
    for _ in range(5):
        engine.step()
    # A prompt of distinct-ish tokens (no prefix-cache hit), as a rendered tool schema would be.
    long_ids = [(1000 + 7919 * j) % vocab for j in range(args.prompt_tokens)]
    t0 = time.perf_counter()
    engine.add_request(Request(request_id="long", prompt_token_ids=long_ids, sampling=SamplingParams(max_tokens=4)))
    last_token = {f"d{i}": t0 for i in range(args.decoders)}
    gaps: list[float] = []
    steps = []
    ttft = done = None
    while done is None:
        sched = engine.scheduler
        s0 = time.perf_counter()
        outputs = engine.step()
        s1 = time.perf_counter()
        long_seq = next((s for s in sched.running if s.request_id == "long"), None)
        steps.append({"s": round(s1 - s0, 3), "running": len(sched.running),
                      "long_computed": long_seq.num_computed if long_seq else None})
        for out in outputs:
            if out.request_id == "long":
                if ttft is None and out.token_ids:
                    ttft = s1 - t0
                if out.finished:
                    done = s1 - t0
            elif out.request_id in last_token:
                gaps.append(s1 - last_token[out.request_id])
                last_token[out.request_id] = s1
    result = {"prompt_tokens": args.prompt_tokens, "decoders": args.decoders, "threads": args.threads,
              "options": dict(args.engine_option), "max_gap_s": round(max(gaps), 3),
              "p50_gap_s": round(sorted(gaps)[len(gaps) // 2], 3), "long_ttft_s": round(ttft or -1, 3),
              "long_done_s": round(done, 3), "steps": len(steps)}
    print(json.dumps(result))
    print("steps (s, long's computed after):", [(st["s"], st["long_computed"]) for st in steps[:40]])
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({**result, "step_log": steps}, fh)
    engine.shutdown()


if __name__ == "__main__":
    main()

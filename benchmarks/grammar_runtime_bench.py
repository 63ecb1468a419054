"""Per-token host cost of the grammar runtime: accept_token, is_terminated and the mask fill.

The decode loop calls, for every request and step, ``fill_next_token_bitmask`` (before sampling) and then
``accept_token`` plus ``is_terminated`` (after it). This script measures each call separately on the
Llama 3 vocabulary (quicktok) in two kinds of runs per schema:

* traces: the schema's instance as compact JSON, tokenized by Llama 3, replayed through fresh matchers
  (the first replay is "cold": the grammar was just compiled; later ones are "warm");
* decode: a batch of requests stepped together like ``gpu_bench_parts.constrained_decode`` without the
  GPU: fill all mask rows, pick a random allowed token per row (what a random-weight model sampled at a
  temperature does), then accept_token + is_terminated for every request, restarting finished ones.
  Two passes with different random tokens: the second meets what the first cached.

    .venv/bin/python benchmarks/grammar_runtime_bench.py
    .venv/bin/python benchmarks/grammar_runtime_bench.py --exact   # the runtime memos off, for comparison
    .venv/bin/python benchmarks/grammar_runtime_bench.py --schemas person,gpu_bench --batch 8 --profile
    .venv/bin/python benchmarks/grammar_runtime_bench.py --budget 48   # budget-aware masks (max_tokens 48)
    .venv/bin/python benchmarks/grammar_runtime_bench.py --schemas gpu_bench --batch 256 --passes 2  # host ms a step
    .venv/bin/python benchmarks/grammar_runtime_bench.py --sharing --batch 256 --passes 2 --steps 24  # batch fill

With ``--budget N`` every fill passes the tokens a request of ``max_tokens=N`` has left (what the engine
does), and a decode request that reaches N tokens must be complete (then it starts over).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]

DEFAULT_SCHEMAS = "gpu_bench,person,address_book,invoice,recursive_tree,string_patterns"
# The schema of gpu_bench_parts.constrained_decode (kept here so this script needs no GPU module).
GPU_BENCH_SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 16}, "age": {"type": "integer", "minimum": 0, "maximum": 150},
    "role": {"enum": ["admin", "user", "guest"]},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3}},
    "required": ["name", "age", "role", "tags"], "additionalProperties": False}
GPU_BENCH_INSTANCE = {"name": "Ada Lovelace", "age": 36, "role": "admin", "tags": ["math", "engines", "poetry"]}


def load_case(name: str) -> tuple[dict, object]:
    if name == "gpu_bench":
        return GPU_BENCH_SCHEMA, GPU_BENCH_INSTANCE
    spec = json.loads((HERE / "schemas" / f"{name}.json").read_text(encoding="utf-8"))
    return spec["schema"], spec["instance"]


class Timer:
    """perf_counter_ns samples in µs, less the median cost of reading the clock."""

    def __init__(self) -> None:
        diffs = sorted(-time.perf_counter_ns() + time.perf_counter_ns() for _ in range(2001))
        self.cost = diffs[len(diffs) // 2]
        self.samples: dict[str, list[float]] = {}

    def add(self, kind: str, start_ns: int, end_ns: int) -> None:
        self.samples.setdefault(kind, []).append(max(end_ns - start_ns - self.cost, 0) / 1000.0)


BUDGET: int | None = None  # --budget: max_tokens of every request


def tokens_left(matcher) -> int | None:
    return None if BUDGET is None else max(BUDGET - matcher.num_accepted_tokens, 1)


def step(timer: Timer, matcher, mask, token: int, *, fill: bool) -> tuple[bool, bool]:
    clock = time.perf_counter_ns
    if fill:
        t0 = clock()
        matcher.fill_next_token_bitmask(mask, index=0, max_tokens_left=tokens_left(matcher))
        timer.add("fill", t0, clock())
    t0 = clock()
    ok = matcher.accept_token(token)
    t1 = clock()
    done = matcher.is_terminated()
    t2 = clock()
    timer.add("accept", t0, t1)
    timer.add("is_terminated", t1, t2)
    timer.add("accept+is_terminated", t0, t2)
    return ok, done


def replay(grammar, trace: list[int], eos: int, timer: Timer, mask) -> None:
    from lightllm_struct.grammar import Matcher

    matcher = Matcher(grammar)
    for token in trace + [eos]:
        ok, done = step(timer, matcher, mask, token, fill=True)
        assert ok, f"trace token {token} rejected"
    assert done, "trace did not terminate"


def decode(grammar, rng: random.Random, timer: Timer, batch: int, steps: int, *, batch_fill: bool = False) -> None:
    """An engine's decode loop without the model: fill every request's mask row, pick a random allowed
    token per row (the GPU's job: no host memory touched beyond the mask words), then accept and check
    termination for every request; a finished request starts over, so requests drift apart.

    ``grammar`` is one grammar for every request or a list of one a request; ``batch_fill`` fills the rows
    with ``BatchMaskFiller`` (what the engine's grammar manager does) instead of one fill a request."""
    import numpy as np

    from lightllm_struct.grammar import Matcher, allocate_token_bitmask
    from lightllm_struct.grammar.batch_fill import BatchMaskFiller

    grammars = grammar if isinstance(grammar, list) else [grammar] * batch
    matchers = [Matcher(g) for g in grammars]
    vocab_size = grammars[0].tokenizer.vocab_size
    mask = allocate_token_bitmask(batch, vocab_size)
    filler = BatchMaskFiller((vocab_size + 31) // 32) if batch_fill else None
    words = mask.numpy().view(np.uint32)
    clock = time.perf_counter_ns
    for _ in range(steps):
        batch_start = clock()
        if filler is not None:
            rows = filler.fill(matchers, [tokens_left(m) for m in matchers]).rows
            words = rows.numpy().view(np.uint32)
        else:
            for i, matcher in enumerate(matchers):
                t0 = clock()
                matcher.fill_next_token_bitmask(mask, index=i, max_tokens_left=tokens_left(matcher))
                timer.add("fill", t0, clock())
        timer.add("step fill, whole batch", batch_start, clock())
        tokens = [pick(words[i], rng) for i in range(batch)]
        batch_start = clock()
        for matcher, token, g in zip(matchers, tokens, grammars):
            ok, done = step(timer, matcher, None, token, fill=False)
            assert ok, f"allowed token {token} rejected"
            out_of_budget = BUDGET is not None and matcher.num_accepted_tokens >= BUDGET
            # guaranteed from the shortest answer's bytes up (below it: best effort)
            assert done or not out_of_budget or matcher.is_complete() or BUDGET < g.distances.start, \
                "a request ran out of budget unfinished"
            if done or out_of_budget:
                matcher.reset()
        timer.add("step accept, whole batch", batch_start, clock())


def schema_variant(k: int) -> dict:
    """The gpu_bench schema with its own enum and length bounds: ``k`` -> a distinct grammar."""
    schema = json.loads(json.dumps(GPU_BENCH_SCHEMA))
    props = schema["properties"]
    props["role"]["enum"] = [f"role{k}", f"r{k}x", "guest"]
    props["name"]["maxLength"] = 8 + k % 17
    props["tags"]["maxItems"] = 1 + k % 5
    return schema


def sharing(compiler, args) -> None:
    """Host ms a decode step for ``--batch`` requests of one schema and of as many schemas, with one fill a
    request (the engine before ``BatchMaskFiller``) and with the batch fill, all in this run. Both modes
    replay the same ``--passes`` walks after a warm-up pass over them, so both meet cached masks."""
    one = compiler.compile_json_schema(GPU_BENCH_SCHEMA)
    start = time.perf_counter()
    many = [compiler.compile_json_schema(schema_variant(k)) for k in range(args.batch)]
    print(f"compiled {len(many)} schema variants in {time.perf_counter() - start:.1f} s", flush=True)
    for layout, grammar in (("one schema", one), (f"{args.batch} schemas", many)):
        for index in range(args.passes):  # both modes take the same walks: warm every state they meet first
            decode(grammar, random.Random(args.seed + index), Timer(), args.batch, args.steps)
        for mode in ("per-request fill", "batch fill"):
            timer = Timer()
            for index in range(args.passes):
                decode(grammar, random.Random(args.seed + index), timer, args.batch, args.steps,
                       batch_fill=mode == "batch fill")
            report(f"{layout}, {mode}, masks cached", timer)


def pick(row, rng: random.Random) -> int:
    """A random allowed token of a packed mask row (a random non-zero word, then a random set bit)."""
    nonzero = row.nonzero()[0]
    word = int(nonzero[rng.randrange(len(nonzero))])
    value = int(row[word])
    bits = [b for b in range(32) if value >> b & 1]
    return 32 * word + bits[rng.randrange(len(bits))]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(label: str, timer: Timer) -> None:
    parts = [f"{label:36s}"]
    for kind in ("accept", "is_terminated", "accept+is_terminated", "fill"):
        got = timer.samples.get(kind)
        if got:
            parts.append(f"{kind} p50 {pct(got, 0.5):7.2f} p99 {pct(got, 0.99):8.2f}")
    for kind in ("step fill, whole batch", "step accept, whole batch"):
        got = timer.samples.get(kind)
        if got:
            parts.append(f"{kind} p50 {pct(got, 0.5) / 1e3:6.3f} ms mean {sum(got) / len(got) / 1e3:6.3f} ms")
    print("  ".join(parts) + f"  (n={len(timer.samples['accept'])})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schemas", default=DEFAULT_SCHEMAS, help="comma-separated stems of benchmarks/schemas")
    parser.add_argument("--passes", type=int, default=5, help="trace replays per schema (pass 1 is cold)")
    parser.add_argument("--batch", type=int, default=32, help="requests stepped together in the decode run")
    parser.add_argument("--steps", type=int, default=48, help="decode steps per schema")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="cProfile the warm replays and decode runs")
    parser.add_argument("--exact", action="store_true",
                        help="no runtime memos (CompiledGrammar.memoize = False): the plain definitions")
    parser.add_argument("--budget", type=int, default=None, help="max_tokens of every request (budget-aware masks)")
    parser.add_argument("--sharing", action="store_true",
                        help="only the batch-fill comparison: one schema and --batch schemas, per-request vs batch fill")
    args = parser.parse_args()
    global BUDGET
    BUDGET = args.budget

    from lightllm_struct.grammar import GrammarCompiler, TokenizerInfo, allocate_token_bitmask
    from lightllm_struct.grammar.vocab.quicktok import load_quicktok_vocab

    qv = load_quicktok_vocab("llama3")
    compiler = GrammarCompiler(TokenizerInfo.from_vocab(qv.vocab, eos_token_ids=qv.eos_token_ids,
                                                        special_token_ids=qv.special_token_ids))
    if args.sharing:
        sharing(compiler, args)
        return
    mask = allocate_token_bitmask(1, len(qv.vocab))
    labels = ("trace cold", "trace warm", "decode pass 1", "decode pass 2")
    totals = {label: Timer() for label in labels}
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    for name in args.schemas.split(","):
        schema, instance = load_case(name)
        grammar = compiler.compile_json_schema(schema)
        grammar.memoize = not args.exact
        trace = qv.encode(json.dumps(instance, separators=(",", ":"), ensure_ascii=False))
        timers = {label: Timer() for label in labels}
        replay(grammar, trace, qv.eos_token_ids[0], timers["trace cold"], mask)
        if profiler:
            profiler.enable()
        for _ in range(args.passes - 1):
            replay(grammar, trace, qv.eos_token_ids[0], timers["trace warm"], mask)
        for index, label in enumerate(labels[2:]):  # pass 2 meets what pass 1 cached ("steady" in the GPU bench)
            decode(grammar, random.Random(args.seed + index), timers[label], args.batch, args.steps)
        if profiler:
            profiler.disable()
        for label, timer in timers.items():
            report(f"{name} {label}", timer)
            for kind, got in timer.samples.items():
                totals[label].samples.setdefault(kind, []).extend(got)
    for label, timer in totals.items():
        report(f"ALL {label}", timer)
    if profiler:
        import pstats

        pstats.Stats(profiler).sort_stats("tottime").print_stats(18)


if __name__ == "__main__":
    main()

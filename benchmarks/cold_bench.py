"""The cold path, measured as a new user sees it: tokenizer set-up, compile, first-walk and warm masks.

On JSONSchemaBench's dev corpus (``$LLMS_JSONSCHEMABENCH``, default ``../shared/data/jsonschemabench-dev``),
Llama 3 vocabulary from quicktok, one thread per engine, every engine in its own worker process and in the
same run. Per schema: the compile time; the masks along a valid instance's token path (compact JSON) for the
freshly compiled grammar ("first walk", every state visited for the first time) and then again with a new
matcher over the same compiled grammar ("warm"). Per engine: the tokenizer set-up (vocabulary -> ready
compiler) and the first compile of the process (a small schema, before the corpus).

    .venv/bin/python benchmarks/cold_bench.py --limit 200 --out /tmp/cold.md
    .venv/bin/python benchmarks/cold_bench.py --engines lightllm_struct --limit 100 --profile pyinstrument
"""
from __future__ import annotations

import os

for _var in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
             "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import grammar_bench  # noqa: E402

DEFAULT_CORPUS = HERE.parent.parent / "shared" / "data" / "jsonschemabench-dev"
ENGINES = ("lightllm_struct", "llguidance", "xgrammar")
FIRST_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "n": {"type": "integer"}},
                "required": ["name"]}


def load_corpus(corpus: Path, *, limit: int, vocab_name: str) -> list[dict]:
    """Every ``len/limit``-th schema of the corpus (sorted by name) with its first valid instance's tokens."""
    from lightllm_struct.grammar.vocab.quicktok import load_quicktok_vocab

    vocab = load_quicktok_vocab(vocab_name)
    paths = sorted(p for p in corpus.glob("*.json"))
    if limit and limit < len(paths):
        paths = [paths[i * len(paths) // limit] for i in range(limit)]
    cases = []
    for path in paths:
        spec = json.loads(path.read_text(encoding="utf-8"))
        valid = [t["data"] for t in spec.get("tests", []) if t.get("valid")]
        if not valid:
            continue
        text = json.dumps(valid[0], separators=(",", ":"), ensure_ascii=False)
        cases.append({"name": path.stem, "schema": spec["schema"], "trace": vocab.encode(text)})
    return cases


def run_case(adapter, case: dict) -> dict:
    from grammar_engines import CompileFailed

    clock = grammar_bench.clock
    start = clock()
    try:
        compiled = adapter.compile(case["schema"])
    except CompileFailed as exc:
        return {"name": case["name"], "error": (str(exc).splitlines() or ["failed"])[0][:160]}
    except Exception as exc:  # an engine bug is a failed compile of that schema, not a stopped benchmark
        return {"name": case["name"], "error": f"crash {type(exc).__name__}: {str(exc)[:120]}"}
    compile_ms = (clock() - start) / 1e6
    first: list[float] = []
    warm: list[float] = []
    verdict = grammar_bench.walk_trace(adapter, adapter.matcher(compiled), case["trace"], first)
    if verdict == "ok":
        grammar_bench.walk_trace(adapter, adapter.matcher(compiled), case["trace"], warm)
    return {"name": case["name"], "compile_ms": compile_ms, "first_us": first, "warm_us": warm, "verdict": verdict}


def worker(conn, engine: str, vocab_name: str, clock_name: str) -> None:
    """One engine: time its tokenizer set-up and first compile, then serve cases."""
    grammar_bench.calibrate(clock_name)
    import torch

    torch.set_num_threads(1)
    from grammar_engines import make_adapter

    from lightllm_struct.grammar.vocab.quicktok import load_quicktok_vocab

    vocab = load_quicktok_vocab(vocab_name)
    start = time.perf_counter()
    adapter = make_adapter(engine, vocab.vocab, vocab.eos_token_ids, vocab.special_token_ids, encode=vocab.encode)
    setup_s = time.perf_counter() - start
    start = time.perf_counter()
    first = run_case(adapter, {"name": "first", "schema": FIRST_SCHEMA, "trace": vocab.encode('{"name":"x"}')})
    conn.send({"setup_s": setup_s, "first_compile_s": time.perf_counter() - start, "first_case": first})
    while (job := conn.recv()) is not None:
        conn.send(run_case(adapter, job))


def bench_engine(engine: str, cases: list[dict], args) -> dict:
    ctx = mp.get_context("spawn")
    proc = conn = None
    out: dict = {"cases": []}
    try:
        for case in cases:
            if proc is None:
                conn, child = ctx.Pipe()
                proc = ctx.Process(target=worker, daemon=True, args=(child, engine, args.vocab, args.clock))
                proc.start()
                if not conn.poll(600):
                    raise RuntimeError(f"{engine}: worker did not start")
                out.setdefault("setup", conn.recv())
            conn.send(case)
            result = None
            if conn.poll(args.timeout):
                try:
                    result = conn.recv()
                except EOFError:
                    result = {"name": case["name"], "error": "worker crashed"}
            if result is None or "crashed" in result.get("error", ""):
                proc.kill()
                proc.join()
                proc = None
                result = result or {"name": case["name"], "error": f"timeout (> {args.timeout:.0f} s)"}
            out["cases"].append(result)
            status = result.get("error") or f"{result['compile_ms']:.1f} ms {result['verdict']}"
            print(f"  {engine:16s} {case['name'][:48]:48s} {status}", file=sys.stderr, flush=True)
    finally:
        if proc is not None:
            conn.send(None)
            proc.join(5)
            if proc.is_alive():
                proc.kill()
    return out


def _pcts(values: list[float]) -> str:
    if not values:
        return "n/a"
    p = np.percentile(values, [50, 90, 99])
    return " / ".join(f"{x:.3g}" for x in p)


def summary(results: dict[str, dict], n_cases: int) -> list[str]:
    """One row per engine; compile and masks over the schemas every engine compiled and walked."""
    walked = [{r["name"] for r in res["cases"] if r.get("verdict") == "ok"} for res in results.values()]
    common = set.intersection(*walked) if walked else set()
    lines = [f"Schemas: {n_cases}; walked by every engine: {len(common)} (compile and mask columns over those).",
             "", "| engine | tokenizer set-up s | 1st compile of process ms | compiled | walked "
             "| compile p50 / p90 / p99 ms | first-walk mask p50 / p90 / p99 µs | warm mask p50 / p90 / p99 µs "
             "| compile+1st mask p50 ms |", "|---|---|---|---|---|---|---|---|---|"]
    for engine, res in results.items():
        ok = [r for r in res["cases"] if "error" not in r]
        common_rs = [r for r in ok if r["name"] in common]
        setup = res.get("setup", {})
        first_total = [r["compile_ms"] + r["first_us"][0] / 1000 for r in common_rs if r["first_us"]]
        lines.append(
            f"| {engine} | {setup.get('setup_s', float('nan')):.2f} | {setup.get('first_compile_s', float('nan')) * 1e3:.0f} "
            f"| {len(ok)}/{n_cases} | {sum(r['verdict'] == 'ok' for r in ok)} "
            f"| {_pcts([r['compile_ms'] for r in common_rs])} "
            f"| {_pcts([x for r in common_rs for x in r['first_us']])} "
            f"| {_pcts([x for r in common_rs for x in r['warm_us']])} | {_pcts(first_total).split(' / ')[0]} |")
    for engine, res in results.items():
        ok = [r for r in res["cases"] if "error" not in r]
        lines.append(f"\n{engine} over all {len(ok)} schemas it compiled: compile p50/p90/p99 "
                     f"{_pcts([r['compile_ms'] for r in ok])} ms; first-walk mask "
                     f"{_pcts([x for r in ok for x in r['first_us']])} µs")
    return lines


def slowest(results: dict[str, dict], engine: str, k: int = 10) -> list[str]:
    ok = sorted((r for r in results.get(engine, {}).get("cases", []) if "error" not in r),
                key=lambda r: -r["compile_ms"])
    return [f"- {r['name']}: compile {r['compile_ms']:.0f} ms, first-walk max "
            f"{max(r['first_us'], default=0):.0f} µs" for r in ok[:k]]


def profile(cases: list[dict], vocab_name: str, kind: str) -> None:
    """Profile our compile + first walk over the cases (pyinstrument tree or cProfile top list)."""
    from grammar_engines import make_adapter

    from lightllm_struct.grammar.vocab.quicktok import load_quicktok_vocab

    vocab = load_quicktok_vocab(vocab_name)
    adapter = make_adapter("lightllm_struct", vocab.vocab, vocab.eos_token_ids, vocab.special_token_ids)
    run_case(adapter, {"name": "first", "schema": FIRST_SCHEMA, "trace": vocab.encode('{"name":"x"}')})
    if kind == "pyinstrument":
        import pyinstrument

        prof = pyinstrument.Profiler(interval=0.0005)
        prof.start()
        for case in cases:
            run_case(adapter, case)
        prof.stop()
        print(prof.output_text(unicode=False, show_all=False))
        return
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    for case in cases:
        run_case(adapter, case)
    prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path(os.environ.get("LLMS_JSONSCHEMABENCH", DEFAULT_CORPUS)))
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--limit", type=int, default=200, help="schemas, evenly spread over the corpus (0: all)")
    parser.add_argument("--vocab", default="llama3", choices=["llama3", "qwen3"])
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per schema (compile + walks)")
    parser.add_argument("--clock", default="cpu", choices=sorted(grammar_bench.CLOCKS))
    parser.add_argument("--profile", choices=["pyinstrument", "cprofile"], help="profile our engine instead")
    parser.add_argument("--out", type=Path, help="write the markdown report here")
    parser.add_argument("--json", type=Path, help="write raw results here")
    args = parser.parse_args(argv)
    cases = load_corpus(args.corpus, limit=args.limit, vocab_name=args.vocab)
    if args.profile:
        profile(cases, args.vocab, args.profile)
        return 0
    results = {e: bench_engine(e, cases, args) for e in args.engines.split(",") if e}
    command = "python benchmarks/cold_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"`{command.strip()}`; {platform.node()}, {os.cpu_count()} CPUs, "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; clock {args.clock}", ""]
    lines += summary(results, len(cases))
    lines += ["", "Slowest compiles (ours):"] + slowest(results, "lightllm_struct")
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report + "\n", encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(results), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

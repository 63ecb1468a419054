"""Grammar engines side by side: compile time, per-token mask time and faithfulness on forced traces.

Every engine gets the same JSON schemas (benchmarks/schemas/*.json), the same vocabulary (Llama 3, 128k,
from quicktok) and the same forced token traces (the schema's instance -> compact JSON -> Llama 3 ids).
At each step the engine fills a packed int32 bitmask row (timed), the trace token must be allowed by that
mask and accepted; at the end EOS must be allowed and terminate the matcher. Each engine runs in its own
worker process with one thread, so a compile that hangs is killed after --timeout without stopping the run.

    .venv/bin/python benchmarks/grammar_bench.py --out /tmp/grammar_bench.md
    .venv/bin/python benchmarks/grammar_bench.py --engines lightllm_struct --profile 25
"""
from __future__ import annotations

import os

for _var in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"  # one thread per engine: llguidance/outlines use rayon, xgrammar gets max_threads=1
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from grammar_report import render_markdown  # noqa: E402

SCHEMA_DIR = HERE / "schemas"
ENGINES = ("lightllm_struct", "xgrammar", "llguidance", "outlines_core")


def load_cases(names: list[str] | None, vocab_name: str) -> list[dict]:
    """Schemas with their compact-JSON instance tokenized by the benchmark vocabulary."""
    import jsonschema

    from lightllm_struct.grammar.vocab.quicktok import load_quicktok_vocab

    vocab = load_quicktok_vocab(vocab_name)
    cases = []
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        if names and path.stem not in names:
            continue
        spec = json.loads(path.read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator(spec["schema"]).validate(spec["instance"])
        text = json.dumps(spec["instance"], separators=(",", ":"), ensure_ascii=False)
        trace = vocab.encode(text)
        assert vocab.decode_bytes(trace) == text.encode("utf-8"), path.stem
        cases.append({"name": path.stem, "schema": spec["schema"], "trace": trace})
    return cases


# wall: elapsed time (the default; cheap to read). cpu: process CPU time, which ignores time spent waiting
# for a core on an oversubscribed machine and counts every thread of the worker, but costs a system call
# (several µs in a VM). The median cost of reading the clock is subtracted from every sample.
CLOCKS = {"cpu": time.process_time_ns, "wall": time.perf_counter_ns}
clock = CLOCKS["wall"]
clock_cost_ns = 0


def calibrate(clock_name: str) -> None:
    global clock, clock_cost_ns
    clock = CLOCKS[clock_name]
    diffs = sorted(-clock() + clock() for _ in range(2001))
    clock_cost_ns = diffs[len(diffs) // 2]


def walk_trace(adapter, m, trace: list[int], samples: list[float]) -> str:
    """Force the trace through a matcher, timing each mask fill; 'ok' or where it went wrong."""
    for step, token in enumerate(trace):
        start = clock()
        adapter.fill(m)
        samples.append(max(clock() - start - clock_cost_ns, 0) / 1000.0)
        if not adapter.allowed(token):
            return f"token {step} of {len(trace)} masked off"
        if not adapter.accept(m, token):
            return f"token {step} of {len(trace)} rejected"
    start = clock()
    adapter.fill(m)
    samples.append(max(clock() - start - clock_cost_ns, 0) / 1000.0)
    if not adapter.allowed(adapter.eos):
        return "EOS masked off at the end"
    if not adapter.accept(m, adapter.eos) or not adapter.finished(m):
        return "EOS did not terminate"
    return "ok"


def run_case(adapter, case: dict, passes: int) -> dict:
    from grammar_engines import CompileFailed

    start = clock()
    try:
        compiled = adapter.compile(case["schema"])
    except CompileFailed as exc:
        return {"name": case["name"], "error": str(exc).splitlines()[0][:160] if str(exc) else "failed"}
    compile_ms = (clock() - start) / 1e6
    samples: list[float] = []
    verdicts = [walk_trace(adapter, adapter.matcher(compiled), case["trace"], samples) for _ in range(passes)]
    return {"name": case["name"], "compile_ms": compile_ms, "mask_us": samples, "verdict": verdicts[0],
            "tokens": len(case["trace"]) + 1}


def worker(conn, engine: str, vocab_name: str, clock_name: str, scanner: str) -> None:
    """One engine in one process: build its tokenizer state once, then serve cases until told to stop."""
    import torch

    calibrate(clock_name)

    torch.set_num_threads(1)
    from grammar_engines import make_adapter

    from lightllm_struct.grammar.vocab.quicktok import load_quicktok_vocab

    vocab = load_quicktok_vocab(vocab_name)
    adapter = make_adapter(engine, vocab.vocab, vocab.eos_token_ids, vocab.special_token_ids,
                           encode=vocab.encode, scanner=scanner)
    # One-time per-vocabulary set-up some engines do on their first compile is not compile time.
    warm = {"name": "warmup", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}, "trace": []}
    run_case(adapter, warm, 1)
    conn.send("ready")
    while (job := conn.recv()) is not None:
        conn.send(run_case(adapter, job["case"], job["passes"]))


class EngineProcess:
    """A worker process that is killed and restarted when a case overruns its deadline."""

    def __init__(self, engine: str, vocab_name: str, clock_name: str, setup_timeout: float,
                 scanner: str = "trie") -> None:
        self.engine, self.vocab_name, self.setup_timeout = engine, vocab_name, setup_timeout
        self.clock_name, self.scanner = clock_name, scanner
        self.proc = None
        self.conn = None

    def start(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker, daemon=True,
                                args=(child, self.engine, self.vocab_name, self.clock_name, self.scanner))
        self.proc.start()
        if not self.conn.poll(self.setup_timeout) or self.conn.recv() != "ready":
            self.stop()
            raise RuntimeError(f"{self.engine}: worker did not start")

    def run(self, case: dict, passes: int, timeout: float) -> dict:
        if self.proc is None:
            self.start()
        self.conn.send({"case": case, "passes": passes})
        if self.conn.poll(timeout):
            try:
                return self.conn.recv()
            except EOFError:
                pass  # the worker died (crash inside the engine): restart it for the next case
            self.stop()
            return {"name": case["name"], "error": "worker crashed"}
        self.stop()
        return {"name": case["name"], "error": f"timeout (> {timeout:.0f} s)"}

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.is_alive():
                try:
                    self.conn.send(None)
                except OSError:
                    pass
                self.proc.join(1.0)
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join()
        self.proc = None


def bench_engine(engine: str, cases: list[dict], args) -> list[dict]:
    proc = EngineProcess(engine, args.vocab, args.clock, setup_timeout=300.0, scanner=args.scanner)
    results = []
    try:
        for case in cases:
            result = proc.run(case, args.passes, args.timeout)
            results.append(result)
            status = result.get("error") or f"{result['compile_ms']:.1f} ms, {result['verdict']}"
            print(f"  {engine:16s} {case['name']:24s} {status}", file=sys.stderr, flush=True)
    finally:
        proc.stop()
    return results


def profile_ours(cases: list[dict], vocab_name: str, top: int, scanner: str = "trie") -> None:
    """cProfile of our compile and of our per-token hot path (fill + accept), printed to stdout."""
    import cProfile
    import pstats

    from grammar_engines import make_adapter

    from lightllm_struct.grammar.vocab.quicktok import load_quicktok_vocab

    vocab = load_quicktok_vocab(vocab_name)
    adapter = make_adapter("lightllm_struct", vocab.vocab, vocab.eos_token_ids, vocab.special_token_ids,
                           scanner=scanner)
    compiled = {}
    prof = cProfile.Profile()
    prof.enable()
    for case in cases:
        try:
            compiled[case["name"]] = adapter.compile(case["schema"])
        except Exception as exc:  # profile what compiles; failures are reported by the benchmark itself
            print(f"{case['name']}: {type(exc).__name__}: {exc}")
    prof.disable()
    print("## compile profile\n")
    pstats.Stats(prof).sort_stats("cumulative").print_stats(top)
    prof = cProfile.Profile()
    prof.enable()
    for case in cases:
        if case["name"] in compiled:
            walk_trace(adapter, adapter.matcher(compiled[case["name"]]), case["trace"], [])
    prof.disable()
    print("## mask + accept profile (all traces, one pass)\n")
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset of " + ",".join(ENGINES))
    parser.add_argument("--schemas", default="", help="comma-separated schema names (default: all)")
    parser.add_argument("--vocab", default="llama3", choices=["llama3", "qwen3"])
    parser.add_argument("--passes", type=int, default=3, help="trace passes per schema (fresh matcher each)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per schema (compile + passes)")
    parser.add_argument("--clock", default="wall", choices=sorted(CLOCKS),
                        help="cpu: process CPU time (robust on a busy machine); wall: elapsed time")
    parser.add_argument("--out", type=Path, help="write the markdown report here")
    parser.add_argument("--json", type=Path, help="write raw per-schema results here")
    parser.add_argument("--merge", type=Path, help="add the engines of an earlier --json (a different run!)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile our engine, top N rows")
    parser.add_argument("--scanner", default="trie", help="our token-mask scanner: trie, trie_numpy or matrix")
    args = parser.parse_args(argv)
    cases = load_cases([s for s in args.schemas.split(",") if s], args.vocab)
    calibrate(args.clock)
    if args.profile:
        profile_ours(cases, args.vocab, args.profile, args.scanner)
        return 0
    engines = [e for e in args.engines.split(",") if e]
    results = json.loads(args.merge.read_text(encoding="utf-8")) if args.merge else {}
    results.update({engine: bench_engine(engine, cases, args) for engine in engines})
    command = "python benchmarks/grammar_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = render_markdown(results, cases, command=command.strip(), passes=args.passes, vocab=args.vocab,
                             clock=args.clock)
    print(report)
    if args.out:
        args.out.write_text(report, encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(results), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

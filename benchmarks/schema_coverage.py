"""JSON Schema coverage on the JSONSchemaBench dev corpus: every file, every labelled instance.

    PYTHONPATH=. python benchmarks/schema_coverage.py [--engine NAME] [--every N] [--part I/K] [--timeout S]
        [--out table.md] [--json out.json]

Prints (and writes with ``--out``) a markdown table: schemas compiled, valid instances accepted, invalid ones
rejected, compile time percentiles, and the most common refusal reasons. ``--part I/K`` runs the I-th of K
interleaved slices (to keep one run short on a shared machine); ``--json`` writes the raw counts, which
``--merge`` adds up. ``--engine xgrammar|llguidance`` runs a peer through the same harness (an instance it
accepts that jsonschema rejects is a false accept: a silent loosening). The harness is tests/grammar/json_schema/corpus.py (the ratchet test runs a slice of it).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # grammar_engines, the peers' adapters

from tests.grammar.json_schema import corpus  # noqa: E402
from tests.grammar.vocab_fixtures import encoder, vocab_bundle  # noqa: E402


class Peer:
    """A peer engine (benchmarks/grammar_engines.py adapter) driven like corpus.Engine."""

    def __init__(self, name: str) -> None:
        import grammar_engines

        vocab, eos, special = vocab_bundle(corpus.VOCAB)
        cls = {"xgrammar": grammar_engines.XGrammar, "llguidance": grammar_engines.LLGuidance}[name]
        extra = {"encode": encoder(corpus.VOCAB)} if name == "llguidance" else {}
        self.adapter = cls(vocab, eos, special, **extra)
        self.encode, self.eos = encoder(corpus.VOCAB), eos[0]
        self.refusals = (grammar_engines.CompileFailed, RuntimeError, ValueError)

    def compile(self, schema):
        return self.adapter.compile(schema)

    def accepts(self, compiled, text: str) -> bool:
        m = self.adapter.matcher(compiled)
        if not all(self.adapter.accept(m, t) for t in self.encode(text)):
            return False
        return self.adapter.accept(m, self.eos) or self.adapter.finished(m)


def run(every: int, part: tuple[int, int], verbose: bool, timeout_s: float, engine_name: str) -> dict:
    warm_s = 0.0
    if engine_name == "lightllm_struct":
        from lightllm_struct.grammar.warmup import warm_up

        engine = corpus.Engine(corpus.corpus_compiler(timeout_s), encoder(corpus.VOCAB), vocab_bundle(corpus.VOCAB)[1][0])
        # as the server does before its first request: numba's one-time loading is no schema's compile time
        warm_s = warm_up(engine.comp).compile_s
    else:
        engine = Peer(engine_name)
    files = corpus.corpus_files(corpus.corpus_dir(), every=every)
    index, parts = part
    tally = corpus.Tally()
    for path in files[index::parts]:
        corpus.run_file(path, engine, tally)
    if verbose:
        print("\n".join(tally.mismatches))
        print("slowest compiles:", ", ".join(f"{name} {t:.1f}s" for t, name in tally.slowest))
    return {**tally.counts(), "compile_s": tally.compile_s, "warm_up_s": warm_s, "refused": tally.refused}


def merge(results: list[dict]) -> dict:
    out: dict = {"refusals": Counter(), "compile_s": []}
    for r in results:
        for key, value in r.items():
            if key == "refusals":
                out["refusals"].update(value)
            elif key in ("compile_s", "refused"):
                out[key] = out.get(key, []) + value
            elif key == "warm_up_s":
                out[key] = max(out.get(key, 0.0), value)
            else:
                out[key] = out.get(key, 0) + value
    out["refusals"] = dict(out["refusals"].most_common())
    return out


def table(r: dict) -> str:
    times = sorted(r["compile_s"])

    def pct(p: float) -> float:
        return times[min(len(times) - 1, int(p * len(times)))] * 1000 if times else 0.0

    lines = ["| schemas | compiled | valid accepted | invalid rejected | false accepts | compile p50 / p90 / max (ms) |",
             "|---|---|---|---|---|---|",
             f"| {r['schemas']} | {r['compiled']} ({100 * r['compiled'] / max(1, r['schemas']):.1f}%) | "
             f"{r['valid_accepted']}/{r['valid']} | {r['invalid_rejected']}/{r['invalid']} | {r['false_accepts']} | "
             f"{pct(0.5):.0f} / {pct(0.9):.0f} / {pct(1.0) if times else 0:.0f} |", "",
             "| refusal | schemas |", "|---|---|"]
    lines += [f"| {reason.replace('|', '/')} | {n} |" for reason, n in list(r["refusals"].items())[:25]]
    if times:
        warm = f" (after a warm-up of {r['warm_up_s']:.1f} s)" if r.get("warm_up_s") else ""
        lines.append(f"\nmean compile {statistics.mean(times) * 1000:.0f} ms over {len(times)} schemas{warm}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--part", default="0/1")
    parser.add_argument("--timeout", type=float, default=10.0, help="compile deadline per schema (s)")
    parser.add_argument("--engine", default="lightllm_struct", choices=["lightllm_struct", "xgrammar", "llguidance"])
    parser.add_argument("--out")
    parser.add_argument("--json")
    parser.add_argument("--merge", nargs="*", help="add up --json files instead of running")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    if args.merge:
        result = merge([json.loads(Path(p).read_text()) for p in args.merge])
    else:
        i, k = (int(x) for x in args.part.split("/"))
        result = run(args.every, (i, k), args.verbose, args.timeout, args.engine)
    if args.json:
        Path(args.json).write_text(json.dumps(result))
    text = table(result)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()

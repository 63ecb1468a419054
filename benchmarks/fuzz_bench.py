"""Compile fuzz benchmark: >= 10,000 hostile and random constraints through the real compile pool.

Every constraint must end in a grammar or a typed error within its deadline; the run reports how they ended,
compile times, the workers' peak memory and how often a worker was killed and replaced. Sources: issue 11's
pathological constraints, hypothesis-generated schemas and the JSONSchemaBench dev corpus mutated at random.

    python benchmarks/fuzz_bench.py --count 10000 --deadline 2 --vocab toy    # --vocab default: SmolLM2's
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, given, settings  # noqa: E402

from lightllm_struct.engine.compile_pool import CompilePool  # noqa: E402
from lightllm_struct.engine.compile_worker import WorkerInit  # noqa: E402
from lightllm_struct.errors import LightLLMStructError  # noqa: E402
from lightllm_struct.grammar import GrammarCompiler, TokenizerInfo  # noqa: E402
from lightllm_struct.request import Constraint  # noqa: E402
from tests.fuzz import corpus, harness  # noqa: E402

TOY = [bytes([b]) for b in range(256)] + [b'{"', b'":', b"true", b"false", b"null", b"<eos>"]


def vocab(kind: str) -> tuple[list[bytes], list[int], list[int]]:
    if kind == "toy":
        return TOY, [len(TOY) - 1], []
    from lightllm_struct.engine.tokenizer import Tokenizer
    from lightllm_struct.grammar.vocab.huggingface import vocab_from_huggingface
    from lightllm_struct.models.loader import resolve_model_dir

    tok = Tokenizer(resolve_model_dir())
    words, _, special = vocab_from_huggingface(tok.backend)
    eos = list(tok.eos_token_ids)
    return list(words), eos, [t for t in special if t not in eos]


def generated(n: int) -> tuple[list[tuple[str, Constraint]], int]:
    """``n`` drawn schemas as constraints, and how many the ``Constraint`` edge already refused (typed)."""
    out: list = []
    refused = 0

    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(corpus.SCHEMAS)
    def draw(schema):
        nonlocal refused
        try:
            out.append((f"generated {len(out)}", Constraint("json_schema", schema)))
        except LightLLMStructError:
            refused += 1

    draw()
    return out, refused


def peak_rss_mb(pool: CompilePool) -> float:
    peak = 0.0
    for pid in pool.worker_pids():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            continue
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--deadline", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-mb", type=int, default=2048)
    ap.add_argument("--vocab", choices=["toy", "default"], default="toy")
    ap.add_argument("--corpus", default=str(Path(__file__).resolve().parents[2] / "shared/data/jsonschemabench-dev"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    words, eos, special = vocab(args.vocab)
    local = GrammarCompiler(TokenizerInfo.from_vocab(words, eos_token_ids=eos, special_token_ids=special))
    init = WorkerInit(vocab=words, eos_token_ids=eos, special_token_ids=special, memory_mb=args.memory_mb,
                      compiler_options={"compile_timeout_s": args.deadline})
    pool = CompilePool(lambda: init, lambda: local.tokenizer, workers=args.workers)
    harness.warm(pool)
    patho = corpus.pathological()
    n_gen = max(0, (args.count - len(patho)) * 3 // 10)
    n_mut = max(0, args.count - len(patho) - n_gen)
    drawn, edge_refused = generated(n_gen)
    sources = {"pathological": patho, "generated": drawn,
               "mutated": list(corpus.mutated(corpus.corpus_schemas(Path(args.corpus)), n_mut, args.seed))}
    report = {"command": " ".join(sys.argv), "machine": f"{platform.node()} {platform.machine()} "
              f"{platform.processor() or ''}".strip(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "deadline_s": args.deadline, "vocab": args.vocab, "workers": args.workers}
    start = time.monotonic()
    for name, cases in sources.items():
        t = time.monotonic()
        out = harness.run(pool, cases, deadline_s=args.deadline, batch=1)
        report[name] = {**out.summary(), "wall_s": round(time.monotonic() - t, 1), "untyped_names": out.untyped[:10],
                        "late_names": out.late[:10]}
        print(name, json.dumps(report[name]), flush=True)
    report["generated_refused_at_the_edge"] = edge_refused
    report["total_s"] = round(time.monotonic() - start, 1)
    report["worker_restarts"] = pool.stats["grammar_compile_worker_restarts_total"]
    report["worker_peak_rss_mb"] = round(peak_rss_mb(pool), 1)
    pool.shutdown()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

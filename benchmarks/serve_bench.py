"""Serving benchmark: the real server (``lightllm-struct serve``) under concurrent streaming HTTP clients, with
the model's captured decode step and bandwidth floor measured in the same run.

For every ``--plan SHAPE=CLIENTS`` entry: a random-weight model of that shape (``gpu_bench_parts.SHAPES``) with
the tokenizer of ``--tokenizer-dir`` (default: the default model's) is written to a temporary folder (or
``--model DIR`` is served as it is; ``default`` = the default model), the server is started on it and, for
each client count and mix (free / constrained / mixed), every client streams ``--requests-per-client`` chat
completions one after another. Reported per row: output tokens/s over the wall time, TTFT and TPOT p50/p99,
and how many constrained answers validate under ``jsonschema``; for the first plan also a schema of long
forced keys with jump-forward on and off (a second server). Then the server is stopped and, on CUDA, the
captured decode step (graph replay + sampling kernel) of the same shape is timed at each client count beside
its floor (weights + KV read / measured copy bandwidth). One command, results in ``$OUT``::

    PYTHONPATH=. python benchmarks/serve_bench.py --tokenizer-dir TOK --out $OUT \\
        --plan llama-3.2-1b=1,8,32,64,128 --plan llama-3-8b=1

On the CPU, tiny: ``PYTHONPATH=. python benchmarks/serve_bench.py --device cpu --plan default=1,2
--requests-per-client 1 --max-tokens 8 --constrained-max-tokens 48``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.gpu_bench_parts import SCHEMA, SHAPES
from benchmarks.serve_load import run_load

DECODE_CONTEXT = 256  # a chat prompt plus about half the answer: where the timed decode steps sit
# Long required keys and a closed object: most of every answer is forced tokens (jump-forward's case).
FORCED_SCHEMA = {"type": "object", "properties": {
    "customer_identification_number": {"type": "integer", "minimum": 0, "maximum": 9999},
    "preferred_contact_method_for_notifications": {"enum": ["electronic_mail", "telephone_call"]},
    "is_eligible_for_the_loyalty_rewards_program": {"type": "boolean"},
    "free_text_comment": {"type": "string", "maxLength": 10}},
    "required": ["customer_identification_number", "preferred_contact_method_for_notifications",
                 "is_eligible_for_the_loyalty_rewards_program", "free_text_comment"],
    "additionalProperties": False}


def _validator(schema: dict = SCHEMA):
    import jsonschema
    check = jsonschema.Draft202012Validator(schema)

    def valid(text: str) -> bool:
        try:
            return check.is_valid(json.loads(text))
        except ValueError:
            return False
    return valid


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(model: str | None, *, device: str, max_num_seqs: int, log_path: Path, extra: list[str]):
    """``lightllm-struct serve`` on a free port until /health is 200; yields (url, model id, startup s)."""
    port = _port()
    cmd = [sys.executable, "-m", "lightllm_struct.cli", "serve", "--port", str(port), "--device", device,
           "--max-num-seqs", str(max_num_seqs), "--max-model-len", "2048", "--log-level", "warning", *extra]
    if model is not None:
        cmd += ["--model", model]
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited with {proc.returncode}: {log_path.read_text()[-3000:]}")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(url + "/health", timeout=5).status_code == 200:
                        break
                time.sleep(1)
            startup = time.perf_counter() - start
            name = httpx.get(url + "/v1/models", timeout=10).json()["data"][0]["id"]
            yield url, name, startup
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def _tokenizer_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    from lightllm_struct.models.loader import resolve_model_dir
    return resolve_model_dir(None)  # the default model's converted folder holds its tokenizer files


def captured_steps(model_dir: Path, batches: list[int], *, ctx: int) -> list[dict]:
    """The CUDA-graph decode step (forward + logits + sampling) of ``model_dir``'s shape, random weights,
    beside the floor ``(weight bytes + KV bytes) / copy bandwidth``."""
    import torch

    from benchmarks.gpu_bench_parts import build_model, decode_case, model_bytes
    from benchmarks.kernel_bench import ceilings
    from lightllm_struct.models.config import ModelConfig

    bw, _ = ceilings()
    cfg = ModelConfig.from_pretrained(model_dir)
    model, kv, runner = build_model(cfg, max_batch=max(batches), max_context=ctx + 1,
                                    kv_budget_bytes=40 * 2 ** 30, batch_sizes=tuple(sorted(set(batches))))
    weights = model_bytes(model, cfg)
    rows = []
    for batch in batches:
        res = decode_case(model, kv, runner, cfg, batch=batch, ctx=ctx)
        if res is None:
            continue
        kv_bytes = 2 * cfg.num_layers * batch * ctx * cfg.num_kv_heads * cfg.head_dim * 2
        rows.append(dict(batch=batch, ctx=ctx, graph_ms=res["graph_ms"], floor_ms=(weights + kv_bytes) / bw * 1e3,
                         weights_floor_ms=weights / bw * 1e3, copy_tb_s=bw / 1e12))
    del model, kv, runner
    torch.cuda.empty_cache()
    return rows


def _compile_first(url: str, name: str, schema: dict, args) -> None:
    """One untimed constrained request: the schema's compile is not a load row's TTFT (a served schema is
    cached; its cold cost is grammar_bench's subject)."""
    run_load(url, name, clients=1, mix="constrained", requests_per_client=1, max_tokens=args.max_tokens,
             constrained_max_tokens=args.constrained_max_tokens, schema=schema, validate=_validator(schema))


def _forced_row(url: str, name: str, args, *, jump_forward: bool) -> dict:
    _compile_first(url, name, FORCED_SCHEMA, args)
    row = run_load(url, name, clients=args.jump_forward_clients, mix="constrained",
                   requests_per_client=args.requests_per_client, max_tokens=args.max_tokens,
                   constrained_max_tokens=args.constrained_max_tokens, schema=FORCED_SCHEMA,
                   validate=_validator(FORCED_SCHEMA))
    row["mix"] = f"forced keys, jump-forward {'on' if jump_forward else 'off'}"
    print(json.dumps(row), flush=True)
    return row


def run_plan(shape: str, clients: list[int], args, tmp: Path, out: Path, *, compare_jump_forward: bool) -> dict:
    model_dir: Path | None
    if shape == "default":
        model_dir, served_model = None, None
    elif shape in SHAPES:
        from benchmarks.engine_bench import build_model_dir

        t = time.perf_counter()
        model_dir = build_model_dir(shape, _tokenizer_dir(args.tokenizer_dir), tmp / shape, device=args.device)
        print(f"[{shape}] random weights written in {time.perf_counter() - t:.0f} s", flush=True)
        served_model = str(model_dir)
    else:
        model_dir, served_model = Path(shape), shape
    rows = []
    with served(served_model, device=args.device, max_num_seqs=max(clients), log_path=out / f"server_{Path(shape).name}.log",
                extra=args.server_arg) as (url, name, startup):
        print(f"[{shape}] server ready in {startup:.0f} s", flush=True)
        _compile_first(url, name, SCHEMA, args)
        for n in clients:
            for mix in args.mixes.split(","):
                row = run_load(url, name, clients=n, mix=mix, requests_per_client=args.requests_per_client,
                               max_tokens=args.max_tokens, constrained_max_tokens=args.constrained_max_tokens,
                               schema=SCHEMA, validate=_validator(), procs=max(1, -(-n // args.clients_per_proc)))
                rows.append(row)
                print(json.dumps({"shape": shape, **row}), flush=True)
        if compare_jump_forward:
            rows.append(_forced_row(url, name, args, jump_forward=True))
    if compare_jump_forward:
        with served(served_model, device=args.device, max_num_seqs=max(clients), extra=[
                *args.server_arg, "--no-enable-jump-forward"], log_path=out / "server_no_jump.log") as (url, name, _):
            rows.append(_forced_row(url, name, args, jump_forward=False))
    steps = []
    if args.device == "cuda" and model_dir is not None:
        steps = captured_steps(model_dir, clients, ctx=DECODE_CONTEXT)
        for s in steps:
            print(json.dumps({"shape": shape, "captured": s}), flush=True)
    return dict(shape=shape, startup_s=startup, load=rows, captured=steps)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:,.1f}" if isinstance(v, float) else str(v)


def markdown(results: list[dict]) -> str:
    lines = []
    for res in results:
        step = {s["batch"]: s for s in res["captured"]}
        lines += [f"### {res['shape']} (server start {res['startup_s']:.0f} s)", "",
                  "| clients | mix | out tok/s | TTFT p50/p99 ms | TPOT p50/p99 ms | captured step ms | floor ms | "
                  "TPOT p50 / step | valid |", "|---|---|---|---|---|---|---|---|---|"]
        for r in res["load"]:
            s = step.get(r["clients"]) if r["mix"] in ("free", "constrained", "mixed") else None
            ratio = r["tpot_p50_ms"] / s["graph_ms"] if s and r["tpot_p50_ms"] else None
            lines.append(f"| {r['clients']} | {r['mix']} | {_fmt(r['out_tokens_per_s'])} | {_fmt(r['ttft_p50_ms'])} / "
                         f"{_fmt(r['ttft_p99_ms'])} | {_fmt(r['tpot_p50_ms'])} / {_fmt(r['tpot_p99_ms'])} | "
                         f"{_fmt(s and s['graph_ms'])} | {_fmt(s and s['floor_ms'])} | {_fmt(ratio)} | "
                         f"{r['constrained_valid']}/{r['constrained']} (errors {r['errors']}) |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plan", action="append", default=None,
                        help="SHAPE=CLIENTS,...; SHAPE: a gpu_bench_parts shape, a model folder, or 'default'")
    parser.add_argument("--tokenizer-dir", default=None)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--mixes", default="free,constrained,mixed")
    parser.add_argument("--requests-per-client", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--constrained-max-tokens", type=int, default=160)
    parser.add_argument("--jump-forward-clients", type=int, default=8,
                        help="clients of the forced-keys schema, jump-forward on vs off (first plan; 0 = skip)")
    parser.add_argument("--clients-per-proc", type=int, default=8,
                        help="streaming clients per client process (one asyncio process cannot keep up with 64)")
    parser.add_argument("--server-arg", action="append", default=[], help="passed on to serve (repeatable)")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plans = [p.split("=") for p in (args.plan or ["llama-3.2-1b=1,8,32,64,128"])]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (shape, clients) in enumerate(plans):
            results.append(run_plan(shape, [int(c) for c in clients.split(",")], args, Path(tmp), out,
                                    compare_jump_forward=i == 0 and args.jump_forward_clients > 0))
            with open(out / "serve_bench.json", "w") as f:  # after every plan: a later failure keeps these
                json.dump(dict(argv=sys.argv, date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                               results=results), f, indent=1)
    (out / "serve_bench.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()

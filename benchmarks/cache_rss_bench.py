"""RSS of the server, engine and compile workers across requests with distinct large tools, then idle (issue 11).

Each request carries its own tool of 250 optional integer parameters (load_bench's hostile tool, with names
made distinct per request), so every one compiles a new turn grammar in the engine and a new tracking grammar
in the server: the grammar caches see ``--requests`` large entries. RSS is sampled every 5 s, then once more
after ``--idle`` seconds without traffic. Run it against the checkout to measure and against an older one
(``PYTHONPATH=<tree>``: the server is started from whatever ``lightllm_struct`` that path holds)::

    python benchmarks/cache_rss_bench.py --requests 20 --concurrency 2 --idle 60
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_bench import MSG, processes  # noqa: E402
from tests.support import running_server  # noqa: E402


def tool(k: int) -> dict:
    return {"type": "function", "function": {"name": f"f{k}", "parameters": {
        "type": "object", "properties": {f"q{k}_{i}": {"type": "integer"} for i in range(250)}}}}


async def send(http: httpx.AsyncClient, k: int, codes: list) -> None:
    body = {"max_tokens": 4, "messages": MSG, "tools": [tool(k)], "tool_choice": "required"}
    start = time.monotonic()
    try:
        r = await http.post("/v1/chat/completions", json=body)
        codes.append((k, r.status_code, round(time.monotonic() - start, 1)))
    except httpx.HTTPError as exc:
        codes.append((k, type(exc).__name__, round(time.monotonic() - start, 1)))


async def run(url: str, pid: int, *, requests: int, concurrency: int, rss: list) -> list:
    codes: list = []
    t0 = time.monotonic()
    queue = list(range(requests))

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            await send(http, queue.pop(0), codes)

    async def sample(stop: asyncio.Event) -> None:
        while not stop.is_set():
            rss.append((round(time.monotonic() - t0, 1), processes(pid)))
            try:
                await asyncio.wait_for(stop.wait(), 5)
            except asyncio.TimeoutError:
                pass

    stop = asyncio.Event()
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        sampler = asyncio.create_task(sample(stop))
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        stop.set()
        await sampler
    return codes


def health(url: str) -> dict:
    h = httpx.get(url + "/health", timeout=30).json()
    keys = ("grammar_cache_entries", "grammar_cache_bytes", "server_tracking_cache_entries",
            "server_tracking_cache_bytes", "grammar_compile_worker_recycles_total",
            "server_grammar_compile_worker_recycles_total")
    return {k: h.get(k) for k in keys}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--idle", type=float, default=60)
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    flags = ["--device", "cpu", "--max-num-seqs", "64", "--log-level", "error"]
    with running_server(port, flags, env={"LLMS_NUM_THREADS": "1"}) as (url, proc, _log):
        # one small tool request first: the tool path's imports and first compiles are not what is measured
        small = {"type": "function", "function": {"name": "g", "parameters": {
            "type": "object", "properties": {"a": {"type": "integer"}}}}}
        httpx.post(url + "/v1/chat/completions", timeout=600,
                   json={"max_tokens": 4, "messages": MSG, "tools": [small], "tool_choice": "required"})
        time.sleep(5)
        report = {"command": " ".join(sys.argv), "package": os.environ.get("PYTHONPATH", ""),
                  "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_average_start": os.getloadavg(),
                  "before": {"rss_mb": processes(proc.pid), **health(url)}}
        rss: list = []
        report["codes"] = asyncio.run(run(url, proc.pid, requests=args.requests, concurrency=args.concurrency,
                                          rss=rss))
        report["after_requests"] = {"rss_mb": processes(proc.pid), **health(url)}
        time.sleep(args.idle)
        report["after_idle"] = {"rss_mb": processes(proc.pid), **health(url)}
        report["peak_mb"] = {k: max(r[1][k] for r in rss) for k in ("server", "engine", "workers")} if rss else {}
        report["rss_over_time"] = rss
        report["load_average_end"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

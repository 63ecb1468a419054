"""One streaming client beside one tool request of 250 optional parameters, against a real server (issue 11's probe).

The tool's rendered schema makes a prompt of about 3,000 tokens; its prefill shares the steps of the stream. The
stream's largest gap between two tokens and the tool request's own latency are printed as one JSON line. The
server runs as ``load_bench.py`` starts it (CPU, default model, torch on 1 thread, engine in its own process).

    python benchmarks/stream_beside_tool.py [--flag=--prefill-budget-while-decoding=128 ...]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.load_bench import MSG, TOOL_250  # noqa: E402
from tests.support import running_server  # noqa: E402


async def _stream(http: httpx.AsyncClient, gaps: list[float], stop: asyncio.Event) -> None:
    body = {"messages": MSG, "max_tokens": 4000, "ignore_eos": True, "stream": True, "temperature": 0}
    async with http.stream("POST", "/v1/chat/completions", json=body) as r:
        last = time.perf_counter()
        async for line in r.aiter_lines():
            if line.startswith("data: ") and "content" in line:
                now = time.perf_counter()
                gaps.append(now - last)
                last = now
            if stop.is_set():
                break  # closing the stream: an abort


async def _run(url: str) -> dict:
    gaps: list[float] = []
    stop = asyncio.Event()
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        streaming = asyncio.create_task(_stream(http, gaps, stop))
        while len(gaps) < 5:
            await asyncio.sleep(0.1)
        before = len(gaps)
        t0 = time.perf_counter()
        r = await http.post("/v1/chat/completions", json={"max_tokens": 4, "messages": MSG, "tools": [TOOL_250],
                                                          "tool_choice": "required"})
        tool_s = time.perf_counter() - t0
        beside = gaps[before:]
        await asyncio.sleep(3)
        stop.set()
        await streaming
    steady = sorted(gaps[1:before])
    return {"tool_status": r.status_code, "tool_latency_s": round(tool_s, 2),
            "prompt_tokens": r.json().get("usage", {}).get("prompt_tokens"),
            "stream_max_gap_s": round(max(beside), 2), "stream_gaps_over_2s": [round(g, 1) for g in beside if g > 2],
            "stream_tokens_beside": len(beside), "stream_gap_before_s": round(steady[len(steady) // 2], 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flag", action="append", default=[], help="an extra `serve` flag, e.g. --flag=--x=1")
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    flags = ["--device", "cpu", "--max-num-seqs", "64", "--log-level", "error", *args.flag]
    with running_server(port, flags, env={"LLMS_NUM_THREADS": "1"}) as (url, _proc, _log):
        print(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "flags": args.flag,
                          **asyncio.run(_run(url))}))


if __name__ == "__main__":
    main()

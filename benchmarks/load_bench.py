"""Load test on loopback: streaming clients, some aborting mid-stream, some hostile (issue 11's requests).

Two phases against one real server (started here, 127.0.0.1): the same good load alone, then with the
aborting and hostile clients beside it. Reports lost good requests, good-request latency percentiles per
phase, the KV pool and grammar cache against the baseline, and the server's RSS over time. Stops by itself.

    python benchmarks/load_bench.py --clients 256 --seconds 180     # the issue's size
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support import running_server  # noqa: E402

MSG = [{"role": "user", "content": "Count to five."}]
HOSTILE = [
    {"json": {"max_tokens": 2, "seed": 2 ** 64, "messages": MSG}},
    {"content": json.dumps({"max_tokens": 2, "messages": MSG}), "headers": {"content-type": "text/plain"}},
    {"json": {"max_tokens": 4, "messages": MSG, "response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object", "properties": {f"f{i}": {"type": "integer"} for i in range(600)}}}}}},
    {"json": {"max_tokens": 4, "messages": MSG, "structured_outputs": {"regex": "(x{0,300}){0,300}"}}},
    {"json": {"max_tokens": 4, "messages": MSG, "structured_outputs": {"choice": ["x" * 700_000, "y" * 700_000]}}},
    {"json": {"max_tokens": 4, "messages": MSG, "structured_outputs": {"grammar": 'start: start "a"'}}},
    {"content": b'{"max_tokens": 2, "messages": [{"role": "user", "content": "\\ud800"}]}',
     "headers": {"content-type": "application/json"}},
    {"json": {"max_tokens": 2, "messages": MSG, "model": "gpt-4o"}},
    {"json": {"max_tokens": 2, "messages": [{"role": "user", "content": "x" * (9 << 20)}]}},
]


async def good(http: httpx.AsyncClient, stop: float, lat: list, lost: list, *, abort: bool) -> None:
    body = {"messages": MSG, "max_tokens": 8, "ignore_eos": True, "stream": True, "temperature": 0.7}
    while time.monotonic() < stop:
        start, events = time.monotonic(), 0
        try:
            async with http.stream("POST", "/v1/chat/completions", json=body) as r:
                if r.status_code != 200:
                    lost.append(f"status {r.status_code}")
                    continue
                async for line in r.aiter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        if "error" in json.loads(line[6:]):
                            lost.append("error event")
                            break
                        events += 1
                        if abort and events == 2:
                            break  # closing the stream mid-way: an abort
            if not abort:
                lat.append(time.monotonic() - start)
        except httpx.HTTPError as exc:
            lost.append(type(exc).__name__)


async def hostile(http: httpx.AsyncClient, stop: float, codes: list, rng: random.Random) -> None:
    while time.monotonic() < stop:
        try:
            r = await http.post("/v1/chat/completions", **rng.choice(HOSTILE))
            codes.append(r.status_code)
        except httpx.HTTPError as exc:
            codes.append(type(exc).__name__)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def phase(url: str, pid: int, *, clients: int, seconds: float, with_hostile: bool, rss: list) -> dict:
    n_abort = clients // 10 if with_hostile else 0
    n_hostile = max(1, clients // 20) if with_hostile else 0
    lat, lost, codes, stop = [], [], [], time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients + 8)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        tasks = [good(http, stop, lat, lost, abort=i < n_abort) for i in range(clients - n_hostile)]
        tasks += [hostile(http, stop, codes, random.Random(i)) for i in range(n_hostile)]

        async def sample() -> None:
            while time.monotonic() < stop:
                rss.append((round(time.monotonic(), 1), round(rss_mb(pid), 1)))
                await asyncio.sleep(5)

        await asyncio.gather(sample(), *tasks)
    lat.sort()
    pct = lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))], 3) if lat else None  # noqa: E731
    return {"good_done": len(lat), "good_lost": len(lost), "lost_why": sorted(set(lost))[:5], "p50_s": pct(0.5),
            "p99_s": pct(0.99), "hostile_codes": {str(c): codes.count(c) for c in set(codes)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=180)
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    flags = ["--device", "cpu", "--max-num-seqs", "64", "--log-level", "error",
             "--limit-concurrency", str(args.clients * 2 + 64)]
    with running_server(port, flags, env={"LLMS_NUM_THREADS": "1"}) as (url, proc, _log):
        base = httpx.get(url + "/health", timeout=30).json()
        rss: list = []
        report = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  "clients": args.clients, "seconds_per_phase": args.seconds, "rss_start_mb": rss_mb(proc.pid)}
        for name, hostile_on in (("clean", False), ("hostile", True)):
            report[name] = asyncio.run(phase(url, proc.pid, clients=args.clients, seconds=args.seconds,
                                             with_hostile=hostile_on, rss=rss))
            print(name, json.dumps(report[name]), flush=True)
        time.sleep(3)  # aborts are applied at the next step boundary
        after = httpx.get(url + "/health", timeout=30).json()
        report["kv_reclaimable_before_after"] = [base["kv_reclaimable_slots"], after["kv_reclaimable_slots"]]
        report["kv_total"] = after["kv_total_slots"]
        report["in_flight_after"] = after["num_in_flight"]
        report["rss_mb_over_time"] = rss
        report["health_after"] = after["status"]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

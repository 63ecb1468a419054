"""Load test on loopback: streaming clients, some aborting mid-stream, some hostile (issue 11's requests).

Two phases against one real server (started here, 127.0.0.1, the default model on the CPU): "clean" runs the
good and the aborting clients; "hostile" runs the same clients plus the hostile ones (5% of ``--clients``,
10% abort), so the comparison is the same load without and with them. After each phase, once the server is
idle again, it records the KV pool, the grammar caches and the RSS of the server, the engine process and the
compile workers; at the end it checks issue 11's criteria: no good request lost, good p99 within 2x of the
clean phase, KV pool and grammar caches back to their post-clean sizes (a cache may keep one entry per
distinct hostile constraint, never more), server and engine RSS within 10%. Stops by itself.

    python benchmarks/load_bench.py --clients 256 --seconds 180 --warmup 30     # the issue's size
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support import running_server  # noqa: E402

MSG = [{"role": "user", "content": "Count to five."}]
SMALL = {"type": "object", "properties": {"n": {"type": "integer"}, "s": {"type": "string", "maxLength": 8}},
         "required": ["n", "s"], "additionalProperties": False}


def _deep(depth: int) -> str:
    """A schema nested ``depth`` arrays deep, as JSON text (json.dumps itself recurses too deep for it)."""
    return '{"type": "array", "items": ' * depth + '{"type": "integer"}' + "}" * depth


def _js(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


TOOL_250 = {"type": "function", "function": {"name": "f", "parameters": {
    "type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(250)}}}}
HOSTILE = {  # issue 11's list, one request each (the slowloris connection is its own coroutine)
    "seed 2**64": {"json": {"max_tokens": 2, "seed": 2 ** 64, "messages": MSG}},
    "seed < -2**63": {"json": {"max_tokens": 2, "seed": -2 ** 63 - 1, "messages": MSG}},
    "top_k 2**64": {"json": {"max_tokens": 2, "top_k": 2 ** 64, "messages": MSG}},
    "text/plain": {"content": json.dumps({"max_tokens": 2, "messages": MSG}), "headers": {"content-type": "text/plain"}},
    "600 optional integers": {"json": {"max_tokens": 4, "messages": MSG, "response_format": _js(
        {"type": "object", "properties": {f"f{i}": {"type": "integer"} for i in range(600)}})}},
    "tool of 250 optional params": {"json": {"max_tokens": 4, "messages": MSG, "tools": [TOOL_250],
                                             "tool_choice": "required"}},
    "regex (x{0,300}){0,300}": {"json": {"max_tokens": 4, "messages": MSG,
                                         "structured_outputs": {"regex": "(x{0,300}){0,300}"}}},
    "choice 2x700KB": {"json": {"max_tokens": 4, "messages": MSG,
                                "structured_outputs": {"choice": ["x" * 700_000, "y" * 700_000]}}},
    "lark start: start a": {"json": {"max_tokens": 4, "messages": MSG, "structured_outputs": {"grammar": 'start: start "a"'}}},
    "lark %import file": {"json": {"max_tokens": 4, "messages": MSG,
                                   "structured_outputs": {"grammar": "%import .secret.X\nstart: X"}}},
    "regex [^\\s\\S]": {"json": {"max_tokens": 4, "messages": MSG, "structured_outputs": {"regex": r"[^\s\S]"}}},
    "schema nested 5000": {"content": json.dumps({"max_tokens": 4, "messages": MSG, "response_format": _js("@")})
                           .replace('"@"', _deep(5000)).encode(), "headers": {"content-type": "application/json"}},
    "lone surrogate": {"content": b'{"max_tokens": 2, "messages": [{"role": "user", "content": "\\ud800"}]}',
                       "headers": {"content-type": "application/json"}},
    "wrong model": {"json": {"max_tokens": 2, "messages": MSG, "model": "gpt-4o"}},
    "5.5 MB prompt": {"json": {"max_tokens": 2, "messages": [{"role": "user", "content": "ab " * (7 << 18)}]}},
    "9 MB body": {"json": {"max_tokens": 2, "messages": [{"role": "user", "content": "x" * (9 << 20)}]}},
}
# encoded once: the client shares the machine's two cores with the server
HOSTILE = {k: v if "content" in v else {"content": json.dumps(v["json"]).encode(),
                                        "headers": {"content-type": "application/json"}} for k, v in HOSTILE.items()}


async def good(http: httpx.AsyncClient, stop: float, lat: list, lost: list, *, abort: bool, constrained: bool) -> None:
    body = {"messages": MSG, "max_tokens": 8, "ignore_eos": True, "stream": True, "temperature": 0.7}
    if constrained:
        body["response_format"] = _js(SMALL)
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


async def hostile(http: httpx.AsyncClient, stop: float, codes: dict, rng: random.Random) -> None:
    names = list(HOSTILE)
    while time.monotonic() < stop:
        name = rng.choice(names)
        try:
            r = await http.post("/v1/chat/completions", **HOSTILE[name])
            code = str(r.status_code)
        except httpx.HTTPError as exc:
            code = type(exc).__name__
        codes.setdefault(name, {}).setdefault(code, 0)
        codes[name][code] += 1


async def slowloris(port: int, stop: float, held: list) -> None:
    """Open a request and trickle one header byte every 2 s; ``held`` gets how long the server kept it open."""
    while time.monotonic() < stop:
        start = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            while time.monotonic() < stop:
                await writer.drain()
                try:
                    if await asyncio.wait_for(reader.read(1024), timeout=2) == b"":
                        break  # the server closed it
                    break  # an answer (a 408 or 400) then the close
                except asyncio.TimeoutError:
                    writer.write(b"a")
            writer.close()
        except OSError:
            pass
        held.append(round(time.monotonic() - start, 1))


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def processes(server: int) -> dict[str, float]:
    """RSS (MB) of the server, the engine process and the compile workers (both pools, summed)."""
    out = {"server": rss_mb(server), "engine": 0.0, "workers": 0.0}
    todo = _children(server)
    while todo:
        pid = todo.pop()
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        key = "workers" if b"compile_worker" in cmd else "engine" if b"spawn_main" in cmd else None
        if key is not None:
            out[key] += rss_mb(pid)
        todo += _children(pid)
    return {k: round(v, 1) for k, v in out.items()}


async def phase(url: str, port: int, pid: int, *, clients: int, seconds: float, with_hostile: bool,
                rss: list) -> dict:
    n_abort, n_hostile = round(clients * 0.10), max(2, round(clients * 0.05))  # one of them: the slowloris
    n_good = clients - n_abort - n_hostile
    lat, lost, abort_lost, codes, held = [], [], [], {}, []
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients + 8)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        tasks = [good(http, stop, lat, lost, abort=False, constrained=i % 3 == 0) for i in range(n_good)]
        tasks += [good(http, stop, [], abort_lost, abort=True, constrained=i % 3 == 0) for i in range(n_abort)]
        if with_hostile:
            tasks += [hostile(http, stop, codes, random.Random(i)) for i in range(n_hostile - 1)]
            tasks.append(slowloris(port, stop, held))

        async def sample() -> None:
            while time.monotonic() < stop:
                rss.append((round(time.monotonic(), 1), processes(pid), round(os.getloadavg()[0], 2)))
                await asyncio.sleep(5)

        await asyncio.gather(sample(), *tasks)
    lat.sort()
    pct = lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))], 3) if lat else None  # noqa: E731
    return {"good_clients": n_good, "aborting_clients": n_abort, "hostile_clients": n_hostile if with_hostile else 0,
            "good_done": len(lat), "good_lost": len(lost), "lost_why": sorted(set(lost))[:5],
            "aborting_errors": len(abort_lost), "p50_s": pct(0.5), "p99_s": pct(0.99), "max_s": pct(1.0),
            "hostile_codes": codes, "slowloris_held_s": sorted(held)[-5:]}


def idle_snapshot(url: str, pid: int, *, wait_s: float = 120) -> dict:
    """/health once nothing is in flight, running or compiling (aborts apply at a step boundary), plus RSS."""
    deadline = time.monotonic() + wait_s
    while True:
        h = httpx.get(url + "/health", timeout=30).json()
        # the engine process applies a gone client's abort at its next step: running and waiting drain after
        # the streams do (a snapshot at in_flight == 0 alone still saw 11-17 running)
        idle = all(h[k] == 0 for k in ("num_in_flight", "num_waiting_for_grammar", "num_running", "num_waiting"))
        if idle or time.monotonic() > deadline:
            break
        time.sleep(1)
    keys = ("status", "num_in_flight", "num_running", "num_waiting", "num_waiting_for_grammar",
            "kv_reclaimable_slots", "kv_total_slots", "grammar_cache_entries", "server_tracking_cache_entries",
            "grammar_cache_bytes", "server_tracking_cache_bytes", "grammar_compile_worker_recycles_total",
            "grammar_compile_worker_restarts_total", "server_grammar_compile_worker_restarts_total")
    return {**{k: h.get(k) for k in keys}, "rss_mb": processes(pid)}


def criteria(report: dict) -> dict:
    clean, hostile, a, b = report["clean"], report["hostile"], report["after_clean"], report["after_hostile"]
    distinct = len(HOSTILE)
    main = lambda s: s["rss_mb"]["server"] + s["rss_mb"]["engine"]  # noqa: E731
    peak = max(r[1]["server"] + r[1]["engine"] for r in report["rss_over_time"] if r[0] >= report["hostile_t0"])
    return {
        "0 good lost": clean["good_lost"] == 0 and hostile["good_lost"] == 0,
        "good p99 within 2x": bool(clean["p99_s"] and hostile["p99_s"] and hostile["p99_s"] <= 2 * clean["p99_s"]),
        "p99 ratio": round(hostile["p99_s"] / clean["p99_s"], 2) if clean["p99_s"] and hostile["p99_s"] else None,
        "KV pool back to baseline": b["kv_reclaimable_slots"] == report["baseline"]["kv_reclaimable_slots"]
        and b["num_in_flight"] == 0,
        "grammar caches back to baseline": b["num_waiting_for_grammar"] == 0
        and b["grammar_cache_entries"] <= a["grammar_cache_entries"] + distinct
        and b["server_tracking_cache_entries"] <= a["server_tracking_cache_entries"] + distinct,
        "server+engine RSS within 10%": abs(main(b) - main(a)) <= 0.1 * main(a) and peak <= 1.1 * main(a),
        "RSS change %": round(100 * (main(b) - main(a)) / main(a), 1), "RSS peak vs after clean %":
        round(100 * (peak - main(a)) / main(a), 1),
        "alive": b["status"] == "ok",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--warmup", type=float, default=30, help="seconds of the clean load first, not recorded")
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    flags = ["--device", "cpu", "--max-num-seqs", "64", "--log-level", "error",
             "--limit-concurrency", str(args.clients * 2 + 64)]
    with running_server(port, flags, env={"LLMS_NUM_THREADS": "1"}) as (url, proc, _log):
        rss: list = []
        report = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  "load_average_start": os.getloadavg(), "clients": args.clients, "seconds_per_phase": args.seconds,
                  "baseline": idle_snapshot(url, proc.pid)}
        # the first requests pay for the constrained clients' compile and the kernels' first runs
        asyncio.run(phase(url, port, proc.pid, clients=args.clients, seconds=args.warmup, with_hostile=False,
                          rss=[]))
        report["after_warmup"] = idle_snapshot(url, proc.pid)
        for name, hostile_on in (("clean", False), ("hostile", True)):
            if hostile_on:
                report["hostile_t0"] = round(time.monotonic(), 1)
            report[name] = asyncio.run(phase(url, port, proc.pid, clients=args.clients, seconds=args.seconds,
                                             with_hostile=hostile_on, rss=rss))
            report[f"after_{name}"] = idle_snapshot(url, proc.pid)
            print(name, json.dumps(report[name]), json.dumps(report[f"after_{name}"]), flush=True)
        report["rss_over_time"] = rss
        report["load_average_end"] = os.getloadavg()
        report["criteria"] = criteria(report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

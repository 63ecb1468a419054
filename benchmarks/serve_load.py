"""Concurrent streaming HTTP clients against a running server: per-request TTFT, TPOT, tokens, validity.

Each of N clients sends its requests one after another (chat completions, ``stream: true`` with usage);
"free" requests ignore EOS and run to ``max_tokens``, "constrained" ones use ``response_format`` with a JSON
schema and are checked by ``jsonschema`` (an independent validator), "mixed" alternates the two by client.
"""
from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import statistics
import time
from dataclasses import dataclass

import httpx


@dataclass
class RequestResult:
    constrained: bool
    ttft_s: float | None
    tpot_s: float | None
    tokens: int
    valid: bool | None  # constrained only: the answer parses and validates
    error: str | None = None


def _body(model: str, *, constrained: bool, schema: dict, max_tokens: int, seed: int) -> dict:
    body = {"model": model, "stream": True, "stream_options": {"include_usage": True}, "temperature": 0.7,
            "seed": seed, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": f"Describe user number {seed} as JSON."}]}
    if constrained:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "user", "schema": schema}}
    else:
        body["ignore_eos"] = True  # every free request is exactly max_tokens long: comparable TPOT
    return body


async def _one(http: httpx.AsyncClient, url: str, body: dict, constrained: bool, validate) -> RequestResult:
    start = time.perf_counter()
    first = last = None
    text, tokens = [], 0
    try:
        async with http.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                return RequestResult(constrained, None, None, 0, False if constrained else None,
                                     f"HTTP {response.status_code}: {(await response.aread())[:200]!r}")
            async for line in response.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("error"):
                    return RequestResult(constrained, None, None, 0, False, str(chunk["error"])[:200])
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
                for choice in chunk.get("choices", []):
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        last = time.perf_counter()
                        first = first or last
                        text.append(piece)
    except httpx.HTTPError as exc:
        return RequestResult(constrained, None, None, 0, False if constrained else None, repr(exc)[:200])
    ttft = None if first is None else first - start
    tpot = (last - first) / (tokens - 1) if first is not None and tokens > 1 else None
    return RequestResult(constrained, ttft, tpot, tokens, validate("".join(text)) if constrained else None)


async def _load(url: str, model: str, *, clients: int, mix: str, requests_per_client: int, max_tokens: int,
                constrained_max_tokens: int, schema: dict, validate, first: int = 0) -> tuple[list[RequestResult], float]:
    results: list[RequestResult] = []
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=limits) as http:
        async def client(i: int) -> None:
            for r in range(requests_per_client):
                constrained = mix == "constrained" or (mix == "mixed" and i % 2 == 1)
                body = _body(model, constrained=constrained, schema=schema, seed=i * 1000 + r,
                             max_tokens=constrained_max_tokens if constrained else max_tokens)
                results.append(await _one(http, url + "/v1/chat/completions", body, constrained, validate))

        start = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(first, first + clients)))
        return results, time.perf_counter() - start


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _load_in_process(queue, kwargs: dict) -> None:
    queue.put(asyncio.run(_load(**kwargs)))


def _load_spread(procs: int, **kwargs) -> tuple[list[RequestResult], float]:
    """``_load`` with the clients split over ``procs`` processes (forked: ``validate`` need not pickle).

    One asyncio process parsing every stream's SSE falls behind a fast server at tens of clients; its delay
    would show as the server's TPOT."""
    clients = kwargs.pop("clients")
    shares = [clients // procs + (i < clients % procs) for i in range(procs)]
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    workers, first = [], 0
    for share in (s for s in shares if s):
        workers.append(ctx.Process(target=_load_in_process, args=(queue, dict(kwargs, clients=share, first=first))))
        first += share
    for w in workers:
        w.start()
    parts = [queue.get() for _ in workers]
    for w in workers:
        w.join()
    return [r for rs, _ in parts for r in rs], max(wall for _, wall in parts)


def run_load(url: str, model: str, *, clients: int, mix: str, requests_per_client: int, max_tokens: int,
             constrained_max_tokens: int, schema: dict, validate, procs: int = 1) -> dict:
    """One load level: the summary row (tokens/s over the wall time, TTFT/TPOT p50/p99 in ms, validity);
    ``procs`` > 1 spreads the clients over that many client processes."""
    kwargs = dict(url=url, model=model, clients=clients, mix=mix, requests_per_client=requests_per_client,
                  max_tokens=max_tokens, constrained_max_tokens=constrained_max_tokens, schema=schema,
                  validate=validate)
    procs = min(procs, clients)
    results, wall = _load_spread(procs, **kwargs) if procs > 1 else asyncio.run(_load(**kwargs))
    ttft = [r.ttft_s * 1e3 for r in results if r.ttft_s is not None]
    tpot = [r.tpot_s * 1e3 for r in results if r.tpot_s is not None]
    constrained = [r for r in results if r.constrained]
    errors = [r.error for r in results if r.error]
    tokens = sum(r.tokens for r in results)
    return dict(clients=clients, mix=mix, client_procs=procs, requests=len(results), out_tokens=tokens, wall_s=wall,
                out_tokens_per_s=tokens / wall if wall else 0.0,
                ttft_p50_ms=_pct(ttft, 0.5), ttft_p99_ms=_pct(ttft, 0.99),
                tpot_p50_ms=_pct(tpot, 0.5), tpot_p99_ms=_pct(tpot, 0.99),
                tpot_mean_ms=statistics.fmean(tpot) if tpot else None,
                constrained=len(constrained), constrained_valid=sum(bool(r.valid) for r in constrained),
                errors=len(errors), first_error=errors[0] if errors else None)

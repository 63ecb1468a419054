"""Several choices of one HTTP request (``n``, a list of prompts) run as engine requests side by side.

Choice ``j`` of a prompt samples with seed ``choice_seed(seed, j)``: distinct, yet fixed by the request's seed.
The first choice of every prompt starts first; the others start once it has produced a token, by which
time its prompt's KV is in the prefix cache (``Scheduler.cache_prompt``), so they compute only the last
prompt token. Every choice carries the same constraint, each with its own matcher.
"""
from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

from fastapi import Request as HTTPRequest

from lightllm_struct.request import Request, RequestOutput, choice_seed
from lightllm_struct.server.constraints import ConstraintSpec
from lightllm_struct.server.serving import Running, ServerState, finish, start


def with_choices(requests: list[Request], n: int) -> list[list[Request]]:
    """Each prompt's request and its ``n - 1`` siblings (same prompt and constraint, their own seeds)."""
    groups = []
    for req in requests:
        seed = req.sampling.seed
        siblings = [dataclasses.replace(req, request_id=f"{req.request_id}-{j}", output_token_ids=[],
                                        prompt_token_ids=list(req.prompt_token_ids),
                                        sampling=req.sampling if seed is None else
                                        dataclasses.replace(req.sampling, seed=choice_seed(seed, j)))
                    for j in range(1, n)]
        groups.append([req, *siblings])
    return groups


async def _close(runnings: list[Running]) -> None:
    await asyncio.gather(*(r.rest.aclose() for r in runnings), return_exceptions=True)


async def start_choices(state: ServerState, groups: list[list[Request]], spec: ConstraintSpec | None
                        ) -> list[Running]:
    """Start every choice (the first of each prompt first); on any error, abort those started and raise."""
    started: list[Running] = []
    try:
        for wave in ([g[0] for g in groups], [r for g in groups for r in g[1:]]):
            results = await asyncio.gather(*(start(state, r, spec) for r in wave), return_exceptions=True)
            started += [r for r in results if isinstance(r, Running)]
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                raise errors[0]
    except BaseException:
        await _close(started)
        raise
    by_id = {r.first.request_id: r for r in started}
    return [by_id[r.request_id] for g in groups for r in g]


async def finish_choices(runnings: list[Running], http: HTTPRequest) -> list[RequestOutput]:
    """Every choice's final output, in order; a disconnect aborts them all."""
    try:
        return list(await asyncio.gather(*(finish(r, http) for r in runnings)))
    finally:
        await _close(runnings)


async def merged_outputs(runnings: list[Running]) -> AsyncIterator[tuple[int, RequestOutput]]:
    """``(choice index, output)`` of all choices as they come; closing it aborts the unfinished ones."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(index: int, running: Running) -> None:
        try:
            async for out in running.outputs():
                await queue.put((index, out, None))
        except Exception as exc:  # noqa: BLE001 -- handed to the consumer, which raises it in the stream
            await queue.put((index, None, exc))
        await queue.put((index, None, None))

    tasks = [asyncio.ensure_future(pump(i, r)) for i, r in enumerate(runnings)]
    live = len(tasks)
    try:
        while live:
            index, out, error = await queue.get()
            if error is not None:
                raise error
            if out is None:
                live -= 1
                continue
            yield index, out
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await _close(runnings)

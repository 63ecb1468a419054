"""The asyncio front of the engine: hand-over between threads, cancellation, overload, failing steps.

A scripted stand-in engine (one token per step, optional failures) isolates the threading behaviour;
the real engine behind the real server is covered by tests/server/test_e2e_*.
"""
from __future__ import annotations

import asyncio
import threading

import pytest

from lightllm_struct.engine.async_engine import AsyncEngine, EngineStepError
from lightllm_struct.errors import EngineOverloadedError, InvalidRequestError
from lightllm_struct.request import Request, RequestOutput, SamplingParams


class ScriptedEngine:
    def __init__(self, *, fail_steps: int = 0) -> None:
        self.live: dict[str, Request] = {}
        self.aborted: list[str] = []
        self.fail_steps = fail_steps
        self.thread_ids: set[int] = set()
        self.done: list[RequestOutput] = []

    def add_request(self, req: Request) -> None:
        self.thread_ids.add(threading.get_ident())
        if req.prompt_token_ids == [0]:
            raise InvalidRequestError("bad prompt", param="prompt")
        self.live[req.request_id] = req

    def abort_request(self, rid: str) -> None:
        if self.live.pop(rid, None) is not None:
            self.aborted.append(rid)

    def has_unfinished(self) -> bool:
        return bool(self.live)

    def step(self) -> list[RequestOutput]:
        self.thread_ids.add(threading.get_ident())
        if self.fail_steps:
            self.fail_steps -= 1
            raise RuntimeError("boom")
        outs = []
        for rid, req in list(self.live.items()):
            req.output_token_ids.append(7)
            n = len(req.output_token_ids)
            finished = n >= req.sampling.max_tokens
            if finished:
                del self.live[rid]
            outs.append(RequestOutput(request_id=rid, prompt=None, prompt_token_ids=req.prompt_token_ids,
                                      text="x" * n, token_ids=list(req.output_token_ids), finished=finished,
                                      finish_reason="length" if finished else None,
                                      num_prompt_tokens=1, num_output_tokens=n))
        return outs

    def stats(self) -> dict:
        return {"num_running": len(self.live)}

    @property
    def kv(self):
        class KV:
            num_reclaimable = 10
        return KV()


def _req(max_tokens: int = 3, prompt=(1,)) -> Request:
    return Request(prompt_token_ids=list(prompt), sampling=SamplingParams(max_tokens=max_tokens))


async def _collect(engine: AsyncEngine, req: Request) -> list[RequestOutput]:
    return [out async for out in engine.generate(req)]


def test_outputs_stream_until_finished_and_the_engine_runs_in_one_thread():
    fake = ScriptedEngine()
    engine = AsyncEngine(fake).start()
    try:
        outs = asyncio.run(_collect(engine, _req(4)))
        assert outs[-1].finished and outs[-1].text == "xxxx"
        assert [len(o.text) for o in outs] == sorted(len(o.text) for o in outs)
        assert len(fake.thread_ids) == 1 and threading.get_ident() not in fake.thread_ids
    finally:
        engine.shutdown()


def test_leaving_early_aborts_the_request():
    fake = ScriptedEngine()
    engine = AsyncEngine(fake).start()

    async def first_only():
        req = _req(10_000)
        async for _ in engine.generate(req):
            break
        for _ in range(100):
            if req.request_id in fake.aborted:
                return True
            await asyncio.sleep(0.01)
        return False

    try:
        assert asyncio.run(first_only())
        assert engine.num_in_flight == 0
    finally:
        engine.shutdown()


def test_overload_and_bad_requests_raise_typed_errors():
    engine = AsyncEngine(ScriptedEngine(), max_pending=1).start()

    async def run():
        slow = engine.generate(_req(10_000))
        await slow.__anext__()
        with pytest.raises(EngineOverloadedError):
            await _collect(engine, _req())
        await slow.aclose()
        with pytest.raises(InvalidRequestError):
            await _collect(engine, _req(prompt=(0,)))

    try:
        asyncio.run(run())
    finally:
        engine.shutdown()


def test_a_failing_step_fails_its_requests_but_not_the_server():
    engine = AsyncEngine(ScriptedEngine(fail_steps=1)).start()
    try:
        with pytest.raises(EngineStepError):
            asyncio.run(_collect(engine, _req()))
        assert engine.dead is None
        assert asyncio.run(_collect(engine, _req(2)))[-1].finished
    finally:
        engine.shutdown()

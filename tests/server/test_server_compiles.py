"""The server's compile workers (``server/compiles.py``): tool-turn grammars, structural tags and tracking
grammars are built in worker processes killed at their deadline, never in the server's interpreter."""
from __future__ import annotations

import asyncio
import os
import time
from types import SimpleNamespace

import lark
import pytest

from lightllm_struct.engine.compile_pool import KILL_GRACE_S
from lightllm_struct.engine.constraint_limits import ConstraintLimits
from lightllm_struct.grammar.errors import CompileTimeout, GrammarTooComplex
from lightllm_struct.server.compiles import ServerCompiles
from lightllm_struct.server.constraints import chat_constraint, request_constraint
from lightllm_struct.server.errors import body_for
from lightllm_struct.server.protocol import ChatCompletionRequest, CompletionRequest
from lightllm_struct.server.tool_formats import choose_format
from lightllm_struct.server.tools import ChatFormat

DEADLINE_S = 3.0


def _tool(parameters: dict) -> dict:
    return {"type": "function", "function": {"name": "f", "parameters": parameters}}


def _request(parameters: dict) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "hi"}],
                                                 "tools": [_tool(parameters)], "tool_choice": "required"})


@pytest.fixture(scope="module")
def turns():
    compiles = ServerCompiles(workers=1, timeout_s=DEADLINE_S, memory_mb=2048,
                              limits=ConstraintLimits(max_enum_values=100))
    chat = ChatFormat(tokenizer=None, fmt=choose_format(None, "hermes"), native_tools=False, reasoning=False)
    yield SimpleNamespace(chat=chat, compiles=compiles)
    compiles.shutdown()


async def _with_loop_lag(coro) -> tuple[object, float]:
    """``coro``'s result (or exception) and the longest the event loop went without running a 10 ms ticker."""
    lag, done = 0.0, False

    async def ticker() -> None:
        nonlocal lag
        last = time.monotonic()
        while not done:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            lag, last = max(lag, now - last), now

    tick = asyncio.create_task(ticker())
    try:
        result = await coro
    except Exception as exc:  # noqa: BLE001 -- the caller asserts on it
        result = exc
    done = True
    await tick
    return result, lag


def test_a_tool_turn_is_built_in_a_worker_and_its_grammar_parses_a_call(turns):
    before = turns.compiles.counters()["server_conversions_total"]
    req = _request({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    (spec, turn), _ = asyncio.run(_with_loop_lag(chat_constraint(req, turns, "prompt")))
    assert turns.compiles.counters()["server_conversions_total"] == before + 1
    pids = turns.compiles.worker_pids()
    assert pids and os.getpid() not in pids
    assert spec.constraint.kind == "lark" and spec.param == "tools"
    parser = lark.Lark(turn.lark, parser="lalr")
    parser.parse('<tool_call>\n{"name": "f", "arguments": {"city": "Paris"}}\n</tool_call>')
    with pytest.raises(lark.exceptions.LarkError):
        parser.parse('<tool_call>\n{"name": "f", "arguments": {"town": "Paris"}}\n</tool_call>')
    tracking = asyncio.run(turns.compiles.tracking_grammar(turn.lark))
    assert type(tracking).__name__ == "CompiledGrammar"
    assert turns.compiles.counters()["server_tracking_compiles_total"] >= 1


def test_a_pathological_tool_schema_ends_typed_at_its_deadline_without_freezing_the_loop(turns):
    # a multipleOf over a 1,500-digit range: the conversion alone takes minutes (quadratic in the digits)
    req = _request({"type": "object", "properties": {"n": {"type": "integer", "minimum": -10 ** 1500,
                                                           "maximum": 10 ** 1500, "multipleOf": 7}}})
    conversions = turns.compiles.counters()["server_conversions_total"]
    start = time.monotonic()
    error, lag = asyncio.run(_with_loop_lag(chat_constraint(req, turns, "prompt")))
    took = time.monotonic() - start
    # the deadline (422), or the converter's own typed refusal when it gets there first (413): never a hang
    assert isinstance(error, (CompileTimeout, GrammarTooComplex)), error
    status, body = body_for(error)
    assert (status, body["error"]["code"]) in ((422, "grammar_compile_timeout"), (413, "grammar_too_complex"))
    assert body["error"]["param"].startswith("tools")
    assert took < DEADLINE_S + KILL_GRACE_S + 2.0, took
    assert lag < 0.5, f"the event loop stalled {lag:.2f} s"  # the conversion ran elsewhere: in the worker
    assert turns.compiles.counters()["server_conversions_total"] == conversions + 1
    # the worker answered at its deadline (its alarm) and serves the next turn
    req = _request({"type": "object", "properties": {"n": {"type": "integer"}}})
    spec, _ = asyncio.run(chat_constraint(req, turns, "prompt"))
    assert spec.constraint.kind == "lark"


def test_an_oversized_tool_schema_is_refused_by_the_limits_with_its_pointer(turns):
    req = _request({"type": "object", "properties": {"a": {"enum": list(range(500))}}})
    with pytest.raises(GrammarTooComplex) as err:
        asyncio.run(chat_constraint(req, turns, "prompt"))
    assert err.value.http_status == 413 and err.value.param == "tools[0].function.parameters"
    assert "/properties/a/enum" in err.value.message


def test_a_structural_tag_converts_in_a_worker(turns):
    before = turns.compiles.counters()["server_conversions_total"]
    tag = {"type": "structural_tag", "triggers": ["<f"],
           "structures": [{"begin": "<f>", "schema": {"type": "integer"}, "end": "</f>"}]}
    req = CompletionRequest.model_validate({"prompt": "x", "structured_outputs": {"structural_tag": tag}})
    spec = asyncio.run(request_constraint(req, turns.compiles))
    assert turns.compiles.counters()["server_conversions_total"] == before + 1
    assert spec.param == "structured_outputs.structural_tag"
    lark.Lark(spec.constraint.spec, parser="lalr").parse("say <f>42</f> done")


def test_tracking_grammars_are_bounded_in_bytes_and_kept_while_a_parser_walks_them():
    compiles = ServerCompiles(workers=1, timeout_s=30.0, memory_mb=2048, cache_max_bytes=64 << 20)
    try:
        first = asyncio.run(compiles.tracking_grammar('start: "a"+'))
        assert first._distances is None  # tracking walks bytes: no shortest-finish tables built for it
        second = asyncio.run(compiles.tracking_grammar('start: "b"+'))
        walker = type("Tracker", (), {})()  # stands for the turn's RegionTracker (weakly held)
        compiles.users.add(first, walker)
        counters = compiles.counters()
        assert counters["server_tracking_cache_entries"] == 2
        assert counters["server_tracking_cache_bytes"] == first.nbytes() + second.nbytes()
        compiles._tracking.max_bytes = 1  # now both are over the bound
        compiles._tracking.refresh()
        counters = compiles.counters()
        assert counters["server_tracking_cache_entries"] == 1  # the idle one went, the walked one stays
        assert counters["server_tracking_cache_bytes"] == first.nbytes()
        del walker
        compiles._tracking.refresh()
        counters = compiles.counters()
        assert counters["server_tracking_cache_entries"] == 0 and counters["server_tracking_cache_bytes"] == 0
        assert counters["server_tracking_cache_evictions_total"] == 2
        assert second.feed_bytes(second.initial_config(), b"bb") is not None
    finally:
        compiles.shutdown()

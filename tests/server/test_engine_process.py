"""The server with its engine core in another process: start, serve, stream, abort on disconnect, engine
death reported (503, a clear error, never a hang), clean stop on SIGTERM and SIGINT."""
from __future__ import annotations

import json
import os
import signal
import socket
import time

import httpx
import jsonschema
import pytest

from tests.support import running_server

ARGS = ["--device", "cpu", "--max-num-seqs", "8", "--log-level", "warning", "--engine-process"]
PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}}, "required": ["name"],
          "additionalProperties": False}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chat(url: str, **body) -> httpx.Response:
    payload = {"messages": [{"role": "user", "content": "Describe a person."}], "max_tokens": 24, **body}
    return httpx.post(url + "/v1/chat/completions", json=payload, timeout=120)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_serve_stream_abort_and_engine_death():
    with running_server(_port(), ARGS, env={"LLMS_NUM_THREADS": "1"}) as (url, proc, _log):
        health = httpx.get(url + "/health", timeout=10).json()
        engine_pid = health["engine_pid"]
        assert engine_pid and engine_pid != proc.pid and _alive(engine_pid)
        out = _chat(url, response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}})
        assert out.status_code == 200
        jsonschema.validate(json.loads(out.json()["choices"][0]["message"]["content"]), PERSON)
        chunks = []
        with httpx.stream("POST", url + "/v1/chat/completions", timeout=120, json={
                "messages": [{"role": "user", "content": "Count to five."}], "max_tokens": 12, "stream": True}) as r:
            chunks = [line for line in r.iter_lines() if line.startswith("data: ")]
        assert chunks[-1] == "data: [DONE]" and len(chunks) > 3
        # A client that leaves mid-stream aborts its request in the engine process.
        with httpx.stream("POST", url + "/v1/completions", timeout=120, json={
                "prompt": "1, 2, 3,", "max_tokens": 2000, "ignore_eos": True, "stream": True}) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    break
        assert _wait(lambda: httpx.get(url + "/health", timeout=10).json()["num_running"] == 0)
        os.kill(engine_pid, signal.SIGKILL)
        assert _wait(lambda: httpx.get(url + "/health", timeout=10).status_code == 503)
        body = httpx.get(url + "/health", timeout=10).json()
        assert body["status"] == "dead" and "engine process exited" in body["error"]
        failed = _chat(url)
        assert failed.status_code >= 500 and "engine" in failed.json()["error"]["message"]
        assert proc.poll() is None  # the server itself stays up to report it


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_server_and_engine(sig):
    with running_server(_port(), ARGS + ["--no-warmup", "--log-level", "info"],
                        env={"LLMS_NUM_THREADS": "1"}) as (url, proc, log):
        engine_pid = httpx.get(url + "/health", timeout=10).json()["engine_pid"]
        assert _chat(url, max_tokens=4).status_code == 200
        proc.send_signal(sig)
        # uvicorn shuts down in order, then re-raises the signal it caught (SIGINT ends as exit 130).
        assert proc.wait(timeout=60) in (0, -sig, 128 + sig)
        assert _wait(lambda: not _alive(engine_pid), timeout=30)
        log.seek(0)
        text = log.read()
        assert "Application shutdown complete" in text and "terminating it" not in text

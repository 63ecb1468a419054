"""One real server for the end-to-end tests: a subprocess on 127.0.0.1 and a free port, started on first use.

It is session-scoped (loading the model takes seconds, and every e2e module shares it); its log goes to a
temporary file that is printed when the server fails to come up.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass

import httpx
import pytest

from tests.support import running_server

STARTUP_TIMEOUT_S = 240


@dataclass
class LiveServer:
    url: str        # http://127.0.0.1:PORT
    model: str
    process: subprocess.Popen

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def health(self) -> dict:
        return httpx.get(self.url + "/health", timeout=10).json()

    def wait_idle(self, timeout: float = 60.0) -> dict:
        """Health once nothing is in flight any more (aborts are applied at the next step boundary)."""
        deadline = time.monotonic() + timeout
        while True:
            h = self.health()
            idle = h["num_in_flight"] == 0 and h["num_running"] == 0 and h["num_waiting"] == 0
            if idle or time.monotonic() > deadline:
                return h
            time.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server():
    port = _free_port()
    env = {"LLMS_NUM_THREADS": os.environ.get("LLMS_NUM_THREADS", "2")}
    args = ["--device", "cpu", "--max-num-seqs", "32", "--log-level", "warning"]
    with running_server(port, args, env=env, startup_timeout_s=STARTUP_TIMEOUT_S) as (url, proc, _log):
        model = httpx.get(url + "/v1/models", timeout=10).json()["data"][0]["id"]
        yield LiveServer(url=url, model=model, process=proc)


@pytest.fixture(scope="session")
def openai_client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.base_url, api_key="unused", timeout=300, max_retries=0)

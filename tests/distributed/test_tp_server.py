"""``serve --tp 2`` on the CPU answers a JSON-schema constrained chat request; killing rank 1 then makes the
server exit non-zero with a message naming the rank, within 30 s."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import jsonschema
import pytest

from lightllm_struct.distributed.group import find_free_port
from tests.distributed.test_tp_engine import SCHEMA
from tests.support import running_server

STARTUP_TIMEOUT_S = 300


def _children_running_a_rank(pid: int) -> list[int]:
    """Pids of ``pid``'s children that are spawned ranks (not multiprocessing's resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture
def tp_server():
    args = ["--tp", "2", "--device", "cpu", "--max-num-seqs", "4", "--num-kv-slots", "2048",
            "--grammar-compile-timeout-s", "600", "--log-level", "warning"]
    with running_server(find_free_port(), args, env={"LLMS_NUM_THREADS": "1"},
                        startup_timeout_s=STARTUP_TIMEOUT_S) as (url, proc, log):
        try:
            yield url, proc, log
        finally:
            # Ranks outlive a killed server only as orphans: end them while they are still its children.
            for pid in _children_running_a_rank(proc.pid):
                os.kill(pid, signal.SIGKILL)


def test_tp2_server_serves_constrained_chat_and_exits_when_a_rank_dies(tp_server):
    from openai import OpenAI

    url, proc, log = tp_server
    client = OpenAI(base_url=url + "/v1", api_key="unused", timeout=300, max_retries=0)
    reply = client.chat.completions.create(
        model=httpx.get(url + "/v1/models", timeout=10).json()["data"][0]["id"],
        messages=[{"role": "user", "content": "Give me a user record as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "user", "schema": SCHEMA}},
        temperature=0, max_tokens=64,
    )
    jsonschema.validate(json.loads(reply.choices[0].message.content), SCHEMA)

    ranks = _children_running_a_rank(proc.pid)
    assert len(ranks) == 1, ranks
    os.kill(ranks[0], signal.SIGKILL)
    t0 = time.monotonic()
    code = proc.wait(timeout=30)
    elapsed = time.monotonic() - t0
    log.seek(0)
    text = log.read()
    assert code != 0, text[-3000:]
    assert f"tensor-parallel rank 1 (pid {ranks[0]}) was killed by SIGKILL" in text, text[-3000:]
    assert elapsed < 30

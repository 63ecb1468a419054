"""The connection guards (``server/connections.py``) on a real uvicorn server over loopback: slowloris
clients are disconnected at the header timeout, a stalled body at the idle timeout, connections beyond the
cap get a 503 at once, and normal requests are served throughout (issue 11: 300 slowloris connections held,
fd exhaustion wrote 125 MB of log in 20 s)."""
from __future__ import annotations

import argparse
import logging
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from lightllm_struct.cli import build_parser, uvicorn_options
from lightllm_struct.config import ConfigError
from lightllm_struct.server.connections import guarded_protocol

HEADER_S, IDLE_S, CAP = 1.0, 1.0, 40


async def _ok(request) -> PlainTextResponse:
    await request.body()
    return PlainTextResponse("ok")


@pytest.fixture(scope="module")
def live():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    protocol = guarded_protocol(header_timeout_s=HEADER_S, idle_timeout_s=IDLE_S, max_connections=CAP)
    app = Starlette(routes=[Route("/", _ok, methods=["GET", "POST"])])
    config = uvicorn.Config(app, http=protocol, log_level="warning", timeout_keep_alive=5, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", port, protocol
    server.should_exit = True
    thread.join(10)


def _closed_by_server(s: socket.socket, within: float) -> bool:
    """True once the server closes ``s`` (EOF or reset) within ``within`` seconds."""
    s.settimeout(within)
    try:
        while True:
            data = s.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_slowloris_connections_are_closed_at_the_header_timeout_while_requests_are_served(live):
    url, port, protocol = live
    before = protocol.counters.counts["connections_header_timeout_total"]
    slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    start = time.monotonic()
    stop = threading.Event()

    def trickle() -> None:  # one header byte at a time, never the blank line that ends the head
        head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
        for i in range(len(head)):
            for s in slow:
                try:
                    s.send(head[i:i + 1])
                except OSError:
                    pass
            if stop.wait(0.2):
                return

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    served = 0
    while time.monotonic() - start < HEADER_S + 0.5:
        assert httpx.get(url + "/", timeout=5).text == "ok"
        served += 1
    closed = [_closed_by_server(s, within=HEADER_S + 3) for s in slow]
    took = time.monotonic() - start
    stop.set()
    t.join()
    for s in slow:
        s.close()
    assert all(closed) and took < HEADER_S + 4, (closed, took)
    assert served >= 3
    assert protocol.counters.counts["connections_header_timeout_total"] == before + len(slow)


def test_a_stalled_body_is_closed_at_the_idle_timeout_and_a_slow_but_moving_one_is_not(live):
    url, port, protocol = live
    before = protocol.counters.counts["connections_idle_timeout_total"]
    stalled = socket.create_connection(("127.0.0.1", port))
    stalled.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
    moving = socket.create_connection(("127.0.0.1", port))
    moving.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n")
    for i in range(8):  # 8 bytes over 2.4 s, each well within the idle timeout
        time.sleep(0.3)
        moving.send(b"x")
    moving.settimeout(5)
    assert moving.recv(4096).startswith(b"HTTP/1.1 200")
    assert _closed_by_server(stalled, within=IDLE_S + 3)
    assert protocol.counters.counts["connections_idle_timeout_total"] == before + 1
    stalled.close()
    moving.close()


def test_connections_beyond_the_cap_get_a_503_at_once_and_the_log_stays_quiet(live, caplog):
    url, port, protocol = live
    refused = protocol.counters.counts["connections_refused_total"]
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(CAP)]
    time.sleep(0.2)
    with caplog.at_level(logging.WARNING):
        extra = []
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", port))
            s.settimeout(5)
            extra.append(s.recv(4096))
            s.close()
    assert all(r.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in r for r in extra)
    assert protocol.counters.counts["connections_refused_total"] == refused + 200
    assert len(caplog.records) <= 2, [r.getMessage() for r in caplog.records]  # counted, not one line each
    for s in held:  # the cap frees as they go (here: closed by the client; else the header timeout)
        s.close()
    time.sleep(0.3)
    assert httpx.get(url + "/", timeout=5).text == "ok"


def test_the_cli_flags_reach_uvicorn():
    args = build_parser().parse_args(["serve", "--timeout-header", "3", "--timeout-idle", "7",
                                      "--max-connections", "50"])
    options = uvicorn_options(args)
    protocol = options["http"]
    assert (protocol.header_timeout_s, protocol.idle_timeout_s, protocol.max_connections) == (3.0, 7.0, 50)
    with pytest.raises(ConfigError):
        uvicorn_options(argparse.Namespace(**{**vars(args), "timeout_header": 0}))

"""Interoperability with Node's `ws` library (Debian package node-ws).

* Node's client (tests/node/echo_client.js) against ``python -m fastsock
  serve echo``: text, binary, fragmented, 16 MiB messages, ping, close 4000.
* fastsock's client against a Node `ws` server (tests/node/echo_server.js):
  messages both types, a fragmented answer, ping, client and server close.

Skipped, with the reason, when node or node-ws is missing
(scripts/ensure-system-deps.sh installs them for ``make test``).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from conformance.launch import ServerProcess, server_command

pytestmark = pytest.mark.needs_node

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
NODE_WS = os.environ.get("NODE_WS", "/usr/share/nodejs/ws")
TIMEOUT = 30.0
MiB = 1 << 20


def _node() -> str:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("node is not installed (Debian package nodejs)")
    if not Path(NODE_WS).is_dir():
        pytest.skip(f"Node's ws library is not at {NODE_WS} (Debian package node-ws)")
    return node


def _fastsock_server() -> ServerProcess:
    if importlib.util.find_spec("fastsock.server") is None:
        pytest.skip("fastsock.server is not built yet")
    return ServerProcess(server_command("fastsock"))


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    _node()
    server = _fastsock_server()
    try:
        yield server.url + "/node"
    finally:
        status = server.stop()
        log = server.stderr_text()
        server.stderr.close()
    assert status == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def _run_node_client(url: str, *args: str) -> dict:
    proc = subprocess.run([_node(), str(NODE_DIR / "echo_client.js"), url, *args],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, NODE_WS=NODE_WS))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check_echoes(result: dict, count: int) -> None:
    assert result["errors"] == []
    assert len(result["echoes"]) == count
    for echo in result["echoes"]:
        assert echo["equal"], echo
        assert echo["gotBinary"] == echo["sentBinary"], echo


def test_node_client_against_fastsock_server(echo_url: str) -> None:
    result = _run_node_client(echo_url)
    _check_echoes(result, 5)
    assert result["echoes"][4]["length"] == len("fragmented")   # reassembled from 3 frames
    assert result["pong"] == "node ping"
    # the server answers the client's close with the same code (RFC 6455 5.5.1)
    assert result["close"]["code"] in (4000, 1000)


@pytest.mark.slow
def test_node_client_16_mib_against_fastsock_server(echo_url: str) -> None:
    result = _run_node_client(echo_url, "--big")
    _check_echoes(result, 7)
    assert [e["length"] for e in result["echoes"][5:]] == [16 * MiB, 16 * MiB]


# --- fastsock client, Node server ------------------------------------------------

@pytest.fixture(scope="module")
def node_url() -> Iterator[str]:
    node = _node()
    server = ServerProcess([node, str(NODE_DIR / "echo_server.js")], env={"NODE_WS": NODE_WS})
    try:
        yield server.url + "/"
    finally:
        server.stop()
        server.stderr.close()


@pytest.fixture
def client() -> Iterator:
    if importlib.util.find_spec("fastsock.client") is None:
        pytest.skip("fastsock.client is not built yet")
    import fastsock
    from fastsock.reactor import Reactor
    from fastsock.websocket import WebSocketOptions

    class Recorder(fastsock.WebSocketHandler):
        def __init__(self) -> None:
            super().__init__()
            self.received: list = []
            self.pongs: list[bytes] = []
            self.closed: tuple[int, str] | None = None

        def on_message(self, data) -> None:
            self.received.append(data)

        def on_pong(self, payload: bytes) -> None:
            self.pongs.append(payload)

        def on_close(self, code: int, reason: str) -> None:
            self.closed = (code, reason)

    reactor = Reactor()
    options = WebSocketOptions(max_message_size=None, ping_interval=None)

    def open_(url: str) -> Recorder:
        return reactor.run_until_complete(
            fastsock.connect(url, Recorder, reactor=reactor, options=options), timeout=TIMEOUT)

    def wait(predicate, timeout: float = TIMEOUT) -> None:
        assert reactor.run_until(predicate, timeout=timeout), "timed out"

    yield open_, wait
    reactor.close()


def test_fastsock_client_messages_against_node_server(client, node_url: str) -> None:
    open_, wait = client
    ws = open_(node_url)
    sent = ["hello", "κόσμε ✓", "", b"\x00\xff", b"", "w" * 70000, os.urandom(300_000)]
    for m in sent:
        ws.send(m)
    wait(lambda: len(ws.received) == len(sent))
    assert ws.received == sent and [type(m) for m in ws.received] == [type(m) for m in sent]
    ws.send("fragments-please")
    wait(lambda: len(ws.received) == len(sent) + 1)
    assert ws.received[-1] == "fragmented!"
    ws.ping(b"from fastsock")
    wait(lambda: ws.pongs)
    assert ws.pongs == [b"from fastsock"]
    ws.close(1000, "done")
    wait(lambda: ws.closed is not None)
    assert ws.closed[0] == 1000


def test_fastsock_client_sees_node_server_close(client, node_url: str) -> None:
    open_, wait = client
    ws = open_(node_url)
    ws.send("close-me")
    wait(lambda: ws.closed is not None)
    assert ws.closed == (4001, "asked to")

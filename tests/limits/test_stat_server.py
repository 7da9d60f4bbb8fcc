"""``python -m fastsock stat --server URL``: a real ``serve echo`` process
with ``--metrics``, WebSocket clients that send known messages, and the
server's own bookkeeping merged into the kernel's rows (matched by address):
states, counters, the closed client gone; the snapshot itself
(fastsock.connections) in process; bad URLs and unreachable servers as one
line and a non-zero exit."""
from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Iterator

import pytest

pytest.importorskip("prometheus_client")
from websockets.sync.client import ClientConnection, connect  # noqa: E402

from fastsock.apps._common import EXIT_RUNTIME, EXIT_USAGE  # noqa: E402
from fastsock.connections import connection_row, connections_path  # noqa: E402
from fastsock.limits.bookkeeping import connections_url, format_age  # noqa: E402
from fastsock.testing import FakeClock, FakeTransport  # noqa: E402
from fastsock.websocket import Extension, WebSocketHandler, WebSocketOptions  # noqa: E402
from fastsock.websocket.handshake import Headers, Request  # noqa: E402

pytestmark = pytest.mark.timeout(120)

PYTHON = sys.executable
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(
    p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
TIMEOUT = 60.0
N_CLIENTS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EchoServer:
    """``python -m fastsock serve echo`` in a child process, stopped by its PID."""

    def __init__(self, *args: str, pure: bool = False) -> None:
        env = dict(ENV, FASTSOCK_PURE="1" if pure else "0")
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "fastsock", "serve", "echo", "--port", "0", "--quiet", *args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on ws://" not in line:
            self.stop()
            raise AssertionError(f"server did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def stat(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "fastsock", "stat", *args], capture_output=True,
                          text=True, timeout=TIMEOUT, env=ENV)


def stat_json(*args: str) -> dict[str, Any]:
    done = stat("--json", *args)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def snapshot(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(connections_url(url), timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        data: dict[str, Any] = json.loads(response.read())
    return data


def wait_until(check: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def traffic(i: int) -> tuple[list[str], list[bytes]]:
    """What client ``i`` sends: i + 1 texts (multi-byte UTF-8 in one) and i binaries."""
    texts = [f"client {i} message {k} " + "é" * (k * 7) for k in range(i + 1)]
    blobs = [bytes([i]) * (100 * (k + 1)) for k in range(i)]
    return texts, blobs


def expected(i: int) -> dict[str, int]:
    texts, blobs = traffic(i)
    size = sum(len(t.encode()) for t in texts) + sum(map(len, blobs))
    return {"messages": len(texts) + len(blobs), "bytes": size}


def talk(ws: ClientConnection, i: int) -> None:
    texts, blobs = traffic(i)
    for message in [*texts, *blobs]:
        ws.send(message)
        assert ws.recv(timeout=10) == message


def address(pair: Any) -> str:
    return f"{pair[0]}:{pair[1]}"


@pytest.fixture(params=["fastsock", "fastsock-pure", "asyncio"])
def server(request: pytest.FixtureRequest) -> Iterator[EchoServer]:
    loop = "asyncio" if request.param == "asyncio" else "fastsock"
    srv = EchoServer("--metrics", "/metrics", "--loop", loop, pure=request.param.endswith("pure"))
    try:
        yield srv
    finally:
        srv.stop()


def open_clients(port: int, n: int) -> list[ClientConnection]:
    clients = []
    for i in range(n):
        ws = connect(f"ws://127.0.0.1:{port}/room/{i}", ping_interval=None, compression=None,
                     open_timeout=10)
        clients.append(ws.__enter__())    # closed by the tests' finally: ws.close()
    return clients


def test_rows_match_the_clients_and_their_traffic(server: EchoServer) -> None:
    url = f"http://127.0.0.1:{server.port}/metrics"
    clients = open_clients(server.port, N_CLIENTS)
    try:
        started = time.monotonic()
        for i, ws in enumerate(clients):
            talk(ws, i)
        peers = {address(ws.socket.getsockname()): i for i, ws in enumerate(clients)}

        data = stat_json("--server", url)
        # the default filter: the server's own port (from the snapshot's listeners)
        assert data["filter"]["ports"] == [server.port]
        merged = [s for s in data["sockets"] if s["server"] is not None]
        assert {s["foreign"] for s in merged} == set(peers)
        for sock in merged:
            conn, i = sock["server"], peers[sock["foreign"]]
            assert sock["state"] == "ESTABLISHED" and server.proc.pid in sock["pids"]
            assert (conn["local"], conn["peer"]) == (sock["local"], sock["foreign"])
            assert conn["state"] == "OPEN"
            assert conn["path"] == f"/room/{i}"
            want = expected(i)
            assert (conn["messages_in"], conn["bytes_in"]) == (want["messages"], want["bytes"])
            assert (conn["messages_out"], conn["bytes_out"]) == (want["messages"], want["bytes"])
            assert conn["counters"]["rx_binary"] == i
            assert conn["buffered_amount"] == 0
            assert conn["subprotocol"] is None and conn["extensions"] == []
            assert 0 < conn["age_seconds"] < time.monotonic() - started + 5
        listener = [s for s in data["sockets"] if s["state"] == "LISTEN"]
        assert len(listener) == 1 and listener[0]["server"] is None
        book = data["server"]
        assert book["pid"] == server.proc.pid
        assert book["count"] == N_CLIENTS and book["matched"] == N_CLIENTS
        assert book["unmatched"] == [] and book["truncated"] == 0

        # One client closes: its row leaves the server's bookkeeping (the
        # kernel may still list the server's end in TIME_WAIT, with no server row).
        gone = address(clients[0].socket.getsockname())
        clients[0].close()
        wait_until(lambda: snapshot(url)["count"] == N_CLIENTS - 1, "the server to drop it")
        data = stat_json("--server", url)
        merged = {s["foreign"]: s for s in data["sockets"] if s["server"] is not None}
        assert set(merged) == set(peers) - {gone}
        assert all(s["server"]["state"] == "OPEN" for s in merged.values())
        assert all(s["state"] != "ESTABLISHED" or s["foreign"] != gone
                   for s in data["sockets"])
        assert data["server"]["count"] == N_CLIENTS - 1 == data["server"]["matched"]
    finally:
        for ws in clients:
            ws.close()


def test_table_text_has_the_server_columns() -> None:
    srv = EchoServer("--metrics", "/metrics")
    clients = open_clients(srv.port, 2)
    try:
        for i, ws in enumerate(clients):
            talk(ws, i)
        done = stat("--server", f"http://127.0.0.1:{srv.port}/metrics/")
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[0].endswith("WebSocket   Age  Msgs in  Bytes in  Msgs out  Bytes out  Buffered")
        for i, ws in enumerate(clients):
            rows = [ln.split() for ln in lines if ln.startswith("tcp ")]
            cells = next(c for c in rows if c[1:3] == [f"127.0.0.1:{srv.port}",
                                                        address(ws.socket.getsockname())])
            want = expected(i)
            # ... ESTABLISHED 0 0 PID/python OPEN AGE in bytes-in out bytes-out buffered
            assert cells[3] == "ESTABLISHED" and cells[-7] == "OPEN"
            assert cells[-6].endswith("s")
            assert cells[-5:] == [str(want["messages"]), str(want["bytes"]),
                                  str(want["messages"]), str(want["bytes"]), "0"]
        assert any(ln.startswith(f"server: pid {srv.proc.pid} ") and "2 WebSocket connections"
                   in ln for ln in lines), done.stdout
    finally:
        for ws in clients:
            ws.close()
        srv.stop()


def test_metrics_port_serves_the_table_too() -> None:
    metrics_port = free_port()
    srv = EchoServer("--metrics-port", str(metrics_port))
    clients = open_clients(srv.port, 3)
    try:
        for i, ws in enumerate(clients):
            talk(ws, i)
        data = stat_json("--server", f"http://127.0.0.1:{metrics_port}")   # /metrics assumed
        assert data["filter"]["ports"] == [srv.port]
        merged = [s for s in data["sockets"] if s["server"] is not None]
        assert sorted(s["foreign"] for s in merged) == sorted(
            address(ws.socket.getsockname()) for ws in clients)
        # ?limit bounds the rows the server builds; the count stays whole
        few = snapshot(f"http://127.0.0.1:{metrics_port}/metrics/connections?limit=1")
        assert (few["count"], few["truncated"], len(few["connections"])) == (3, 2, 1)
        with pytest.raises(urllib.error.HTTPError) as bad:
            urllib.request.urlopen(
                f"http://127.0.0.1:{metrics_port}/metrics/connections?limit=x", timeout=10)
        assert bad.value.code == 400
    finally:
        for ws in clients:
            ws.close()
        srv.stop()


class _NotFastsock(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>hello</html>" if self.path.startswith("/metrics") else b"no"
        self.send_response(200 if self.path.startswith("/metrics") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def other_http() -> Iterator[int]:
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _NotFastsock)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()


def one_line_error(done: subprocess.CompletedProcess[str], code: int, needle: str) -> None:
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastsock: error: "), done.stderr
    assert needle in lines[0], lines[0]
    assert done.stdout == ""


@pytest.mark.parametrize("url", ["127.0.0.1:8765/metrics", "ftp://127.0.0.1/metrics",
                                 "http:///metrics", "http://127.0.0.1:99999/metrics"])
def test_a_bad_url_is_a_usage_error(url: str) -> None:
    one_line_error(stat("--server", url), EXIT_USAGE, "--server")


def test_an_unreachable_server_is_a_runtime_error() -> None:
    port = free_port()     # nothing listens there any more
    one_line_error(stat("--server", f"http://127.0.0.1:{port}/metrics", "--json"),
                   EXIT_RUNTIME, f"cannot reach http://127.0.0.1:{port}/metrics/connections")


def test_something_else_answering_is_a_runtime_error(other_http: int) -> None:
    one_line_error(stat("--server", f"http://127.0.0.1:{other_http}/metrics"), EXIT_RUNTIME,
                   "did not answer a fastsock connections snapshot")
    one_line_error(stat("--server", f"http://127.0.0.1:{other_http}/elsewhere"), EXIT_RUNTIME,
                   "answered 404")


# ------------------------------------------------------------ in process


class Shout(Extension):
    name = "x-shout"


def test_connection_row_reads_the_handler() -> None:
    clock = FakeClock()
    ws = WebSocketHandler()
    transport = FakeTransport(ws, clock=clock, peername=("::ffff:10.0.0.7", 40000, 0, 0),
                              sockname=("::ffff:10.0.0.1", 8765, 0, 0))
    request = Request("GET", "/chat?x=1", "/chat", "x=1", "1.1", Headers([]))
    ws.attach(transport, clock, options=WebSocketOptions(ping_interval=None),
              subprotocol="chat.v2", extensions=(Shout(),), request=request)
    transport.set_buffer_size(4096)
    row = connection_row(ws, now=ws.opened_at + 12.5)
    assert row["local"] == "[::ffff:10.0.0.1]:8765" and row["peer_port"] == 40000
    assert (row["path"], row["state"], row["age_seconds"]) == ("/chat", "OPEN", 12.5)
    assert (row["subprotocol"], row["extensions"]) == ("chat.v2", ["x-shout"])
    assert row["buffered_amount"] == 4096
    assert row["messages_in"] == row["bytes_out"] == 0


def test_connections_url_and_age() -> None:
    assert connections_url("http://h:1") == "http://h:1/metrics/connections"
    assert connections_url("http://h:1/m/") == "http://h:1/m/connections"
    assert connections_url("http://h:1/m/connections?limit=5") == \
        "http://h:1/m/connections?limit=5"
    assert connections_path("/metrics") == "/metrics/connections" == connections_path("/metrics/")
    assert [format_age(s) for s in (0.04, 59.94, 65, 7380, 2 * 86400 + 3600, None, -1)] == \
        ["0.0s", "59.9s", "1m05s", "2h03m", "2d01h", "?", "?"]

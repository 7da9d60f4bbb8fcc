"""Interoperability with the `websockets` library, both directions.

* fastsock's echo server (``python -m fastsock serve echo``, a real process)
  with websockets' client: text, binary, fragmented and 16 MiB messages,
  pings, and every close path (client close with each kind of code, server
  close on a too-big message, abrupt client, server shutdown on SIGTERM).
* fastsock's client (``fastsock.connect`` on the reactor) against a
  websockets server: the same messages, pings, client and server closes.
"""
from __future__ import annotations

import importlib.util
import os
import signal
import socket
import struct
import threading
from typing import Iterator

import pytest

websockets = pytest.importorskip("websockets")
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK  # noqa: E402
from websockets.sync.client import connect as ws_connect  # noqa: E402
from websockets.sync.server import serve as ws_serve  # noqa: E402

from conformance.launch import ServerProcess, server_command  # noqa: E402

MiB = 1 << 20
TIMEOUT = 30.0


def _server_missing() -> str | None:
    if importlib.util.find_spec("fastsock.server") is None:
        return "fastsock.server is not built yet"
    from fastsock.apps import APPS
    return None if "echo" in APPS else "python -m fastsock serve echo is not registered yet"


def _start(*extra: str) -> ServerProcess:
    missing = _server_missing()
    if missing:
        pytest.skip(missing)
    return ServerProcess(server_command("fastsock") + list(extra))


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    server = _start()
    try:
        yield server.url
    finally:
        status = server.stop()
        log = server.stderr_text()
        server.stderr.close()
    assert status == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def _client(url: str, **kw):
    return ws_connect(url, max_size=None, compression=None, open_timeout=TIMEOUT,
                      close_timeout=TIMEOUT, **kw)


# --- fastsock server, websockets client --------------------------------------

@pytest.mark.parametrize("message", ["", "hello", "κόσμε ✓ 𝄞", "x" * 126, "y" * 65536],
                         ids=["empty", "ascii", "non-ascii", "126", "64k"])
def test_text_echo_keeps_type(echo_url: str, message: str) -> None:
    with _client(echo_url) as ws:
        ws.send(message)
        got = ws.recv(timeout=TIMEOUT)
    assert isinstance(got, str) and got == message


@pytest.mark.parametrize("message", [b"", b"\x00\xff\xfe", bytes(range(256)) * 300],
                         ids=["empty", "non-utf8", "75k"])
def test_binary_echo_keeps_type(echo_url: str, message: bytes) -> None:
    with _client(echo_url) as ws:
        ws.send(message)
        got = ws.recv(timeout=TIMEOUT)
    assert isinstance(got, bytes) and got == message


def test_fragmented_messages_are_reassembled(echo_url: str) -> None:
    text_parts = ["κό", "σμε", "", "-" * 1000]
    binary_parts = [b"\x00" * 10, b"\xff" * 100_000, b"end"]
    with _client(echo_url) as ws:
        ws.send(text_parts)          # an iterable goes out as one fragmented message
        ws.send(binary_parts)
        assert ws.recv(timeout=TIMEOUT) == "".join(text_parts)
        assert ws.recv(timeout=TIMEOUT) == b"".join(binary_parts)


@pytest.mark.slow
@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_16_mib_message(echo_url: str, binary: bool) -> None:
    message: str | bytes = os.urandom(16 * MiB) if binary else "é" * (8 * MiB)
    with _client(echo_url) as ws:
        ws.send(message)
        got = ws.recv(timeout=120)
    assert type(got) is type(message) and got == message


def test_many_messages_keep_order(echo_url: str) -> None:
    with _client(echo_url) as ws:
        for i in range(500):
            ws.send(f"m{i}" if i % 2 else f"m{i}".encode())
        got = [ws.recv(timeout=TIMEOUT) for _ in range(500)]
    assert got == [f"m{i}" if i % 2 else f"m{i}".encode() for i in range(500)]


@pytest.mark.parametrize("payload", [b"", b"ping!", bytes(range(125))], ids=["empty", "small", "125"])
def test_ping_is_answered_with_same_payload(echo_url: str, payload: bytes) -> None:
    with _client(echo_url) as ws:
        pong = ws.ping(payload)
        assert pong.wait(TIMEOUT), "no pong"
        ws.send("after ping")
        assert ws.recv(timeout=TIMEOUT) == "after ping"


@pytest.mark.parametrize("code,reason", [(1000, ""), (1001, "going away"), (3000, "app"),
                                         (4999, "κόσμε")])
def test_client_close_is_echoed(echo_url: str, code: int, reason: str) -> None:
    with _client(echo_url) as ws:
        ws.send("before close")
        assert ws.recv(timeout=TIMEOUT) == "before close"
        ws.close(code, reason)
    assert ws.protocol.close_rcvd is not None, "server did not answer the close"
    # RFC 6455 5.5.1: the answer typically echoes the status code
    assert ws.protocol.close_rcvd.code in (code, 1000)
    assert ws.protocol.close_sent.code == code


def test_server_closes_1009_on_too_big_message() -> None:
    server = _start("--max-message-size", "1k")
    try:
        with _client(server.url) as ws:
            ws.send("a" * 1024)
            assert ws.recv(timeout=TIMEOUT) == "a" * 1024
            ws.send("b" * 1025)
            with pytest.raises(ConnectionClosedError) as info:
                ws.recv(timeout=TIMEOUT)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    finally:
        server.stop()
        server.stderr.close()


def test_abrupt_client_does_not_hurt_the_server(echo_url: str) -> None:
    with _client(echo_url) as ws:
        ws.send("half")
        # drop TCP without a close frame (RST), with unread data on both sides
        ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ws.socket.close()
    with _client(echo_url) as other:
        other.send("still alive")
        assert other.recv(timeout=TIMEOUT) == "still alive"


def test_server_sigterm_closes_clients_with_going_away() -> None:
    server = _start()
    try:
        with _client(server.url) as ws:
            ws.send("x")
            assert ws.recv(timeout=TIMEOUT) == "x"
            server.proc.send_signal(signal.SIGTERM)
            with pytest.raises((ConnectionClosedOK, ConnectionClosedError)) as info:
                ws.recv(timeout=TIMEOUT)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        assert server.proc.wait(TIMEOUT) == 0
    finally:
        server.stop()
        server.stderr.close()


# --- websockets server, fastsock client ----------------------------------------

def _peer_handler(ws) -> None:
    for message in ws:
        if message == "close-me":
            ws.close(4001, "asked to")
            return
        if message == "fragments-please":
            ws.send(["frag", "mented", "!"])
            continue
        ws.send(message)


@pytest.fixture(scope="module")
def peer_url() -> Iterator[str]:
    server = ws_serve(_peer_handler, "127.0.0.1", 0, max_size=None, compression=None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/any/path"
    finally:
        server.shutdown()
        thread.join(TIMEOUT)


def _fastsock_client():
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
    return reactor, open_


@pytest.fixture
def fs_client() -> Iterator:
    reactor, open_ = _fastsock_client()
    yield reactor, open_
    reactor.close()


def _wait(reactor, predicate, timeout: float = TIMEOUT) -> None:
    assert reactor.run_until(predicate, timeout=timeout), "timed out"


def test_client_messages_against_websockets_server(fs_client, peer_url: str) -> None:
    reactor, open_ = fs_client
    ws = open_(peer_url)
    sent = ["hello", "κόσμε", "", b"\x00\xff", b"", "z" * 70000, bytes(200_000)]
    for m in sent:
        ws.send(m)
    _wait(reactor, lambda: len(ws.received) == len(sent))
    assert ws.received == sent and [type(m) for m in ws.received] == [type(m) for m in sent]
    ws.send("fragments-please")
    _wait(reactor, lambda: len(ws.received) == len(sent) + 1)
    assert ws.received[-1] == "fragmented!"
    ws.close(1000, "bye")
    _wait(reactor, lambda: ws.closed is not None)
    assert ws.closed[0] == 1000


@pytest.mark.slow
def test_client_16_mib_against_websockets_server(fs_client, peer_url: str) -> None:
    reactor, open_ = fs_client
    ws = open_(peer_url)
    big = os.urandom(16 * MiB)
    ws.send(big)
    _wait(reactor, lambda: len(ws.received) == 1, timeout=120)
    assert ws.received[0] == big
    ws.close()
    _wait(reactor, lambda: ws.closed is not None)


def test_client_ping_against_websockets_server(fs_client, peer_url: str) -> None:
    reactor, open_ = fs_client
    ws = open_(peer_url)
    ws.ping(b"are you there")
    _wait(reactor, lambda: ws.pongs)
    assert ws.pongs == [b"are you there"]
    assert ws.latency is not None and ws.latency >= 0
    ws.close()
    _wait(reactor, lambda: ws.closed is not None)


def test_client_sees_server_close_code(fs_client, peer_url: str) -> None:
    reactor, open_ = fs_client
    ws = open_(peer_url)
    ws.send("close-me")
    _wait(reactor, lambda: ws.closed is not None)
    assert ws.closed == (4001, "asked to")


def test_client_reports_abrupt_server_as_1006(fs_client) -> None:
    reactor, open_ = fs_client
    # a websockets server whose handler kills the TCP connection mid-session
    def handler(ws) -> None:
        ws.recv()
        ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ws.socket.close()

    server = ws_serve(handler, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        ws = open_(f"ws://127.0.0.1:{server.socket.getsockname()[1]}/")
        ws.send("bye")
        _wait(reactor, lambda: ws.closed is not None)
        assert ws.closed[0] == 1006
    finally:
        server.shutdown()
        thread.join(TIMEOUT)

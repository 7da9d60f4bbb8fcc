"""fastsock's WebSocket client on the reactor against a real ``websockets`` server."""
from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from typing import Any, Iterator

import pytest
from websockets.sync.server import serve as ws_serve

from fastsock.client import connect
from fastsock.exceptions import ConnectTimeoutError, InvalidResponseError
from fastsock.reactor import Reactor
from fastsock.websocket import WebSocketHandler, WebSocketOptions


class Client(WebSocketHandler):
    def __init__(self) -> None:
        super().__init__()
        self.received: list[Any] = []
        self.pongs: list[bytes] = []
        self.closed: tuple[int, str] | None = None

    def on_message(self, data: Any) -> None:
        self.received.append(data)

    def on_pong(self, payload: bytes) -> None:
        self.pongs.append(payload)

    def on_close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def _echo(ws: Any) -> None:
    for message in ws:
        if message == "server-close":
            ws.close(4002, "server says bye")
            return
        ws.send(message)


@pytest.fixture
def peer() -> Iterator[str]:
    """A websockets (sync) echo server in a thread; yields its URL."""
    def process(conn: Any, request: Any) -> Any:
        if request.path == "/forbidden":
            return conn.respond(403, "nope\n")
        return None

    server = ws_serve(_echo, "127.0.0.1", 0, max_size=None, process_request=process,
                      select_subprotocol=lambda conn, offered: "v1" if "v1" in offered else None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
    finally:
        server.shutdown()
        thread.join(10)


@pytest.fixture
def loop() -> Iterator[Reactor]:
    r = Reactor()
    yield r
    for t in list(r.transports):
        t.abort()
    r.run_until(timeout=0.05)
    r.close()


BIG = WebSocketOptions(max_message_size=None, ping_interval=None)


def test_messages_fragments_large_and_ping(peer: str, loop: Reactor) -> None:
    ws = loop.run_until_complete(connect(peer + "/x?y=1", Client, reactor=loop, options=BIG,
                                         subprotocols=["v1"]), timeout=10)
    assert ws.subprotocol == "v1"
    big = bytes(range(256)) * (1 << 16)        # 16 MiB, masked by us
    ws.send("héllo")
    ws.send(b"\x00\x01")
    ws.send(memoryview(b"view"))
    ws.send(big)
    ws.ping(b"hb")
    assert loop.run_until(lambda: len(ws.received) == 4 and ws.pongs, timeout=60)
    assert ws.received == ["héllo", b"\x00\x01", b"view", big]
    assert ws.pongs == [b"hb"] and ws.latency is not None and ws.latency >= 0
    ws.close(1000, "done")
    assert loop.run_until(lambda: ws.closed is not None, timeout=10)
    assert ws.closed == (1000, "done")


def test_server_initiated_close(peer: str, loop: Reactor) -> None:
    ws = loop.run_until_complete(connect(peer, Client, reactor=loop), timeout=10)
    ws.send("server-close")
    assert loop.run_until(lambda: ws.closed is not None, timeout=10)
    assert ws.closed == (4002, "server says bye")


def test_non_101_answer_is_a_clear_error(peer: str, loop: Reactor) -> None:
    with pytest.raises(InvalidResponseError) as info:
        loop.run_until_complete(connect(peer + "/forbidden", Client, reactor=loop), timeout=10)
    assert info.value.status == 403
    assert "403" in str(info.value) and "nope" in str(info.value)


def test_wrong_accept_is_rejected(loop: Reactor) -> None:
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)

    def liar() -> None:
        conn, _ = lsock.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n")
            conn.recv(10)

    thread = threading.Thread(target=liar, daemon=True)
    thread.start()
    try:
        url = f"ws://127.0.0.1:{lsock.getsockname()[1]}/"
        with pytest.raises(InvalidResponseError, match="Sec-WebSocket-Accept"):
            loop.run_until_complete(connect(url, Client, reactor=loop), timeout=10)
    finally:
        thread.join(5)
        lsock.close()


def test_handshake_timeout_when_the_server_never_answers(loop: Reactor) -> None:
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)                 # accepted by the kernel, never answered
    try:
        url = f"ws://127.0.0.1:{lsock.getsockname()[1]}/"
        with pytest.raises(ConnectTimeoutError):
            loop.run_until_complete(connect(url, Client, reactor=loop, open_timeout=0.3), timeout=10)
    finally:
        lsock.close()


def test_connection_refused(loop: Reactor) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(OSError):
        loop.run_until_complete(connect(f"ws://127.0.0.1:{port}/", Client, reactor=loop), timeout=10)


@pytest.mark.parametrize("url", ["http://x/", "ws://", "ws://h/#frag"])
def test_bad_urls(url: str, loop: Reactor) -> None:
    with pytest.raises(ValueError):
        connect(url, Client, reactor=loop)


@pytest.fixture
def tls_peer(tls: Any) -> Iterator[int]:
    """A websockets (sync) echo server over TLS (trustme certificate); yields its port."""
    server = ws_serve(_echo, "127.0.0.1", 0, max_size=None, ssl=tls.server_context())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.socket.getsockname()[1]
    finally:
        server.shutdown()
        thread.join(10)


def test_callback_client_over_wss(tls_peer: int, tls: Any, loop: Reactor) -> None:
    future = connect(f"wss://localhost:{tls_peer}/secure", Client, reactor=loop,
                     ssl=tls.client_context(), options=BIG)
    ws = loop.run_until_complete(future, timeout=10)
    assert isinstance(ws, Client)
    assert ws.transport.get_extra_info("ssl_object").server_hostname == "localhost"
    big = b"\x07" * (3 << 20)                  # many TLS records
    ws.send("over tls")
    ws.send(big)
    assert loop.run_until(lambda: len(ws.received) == 2, timeout=30)
    assert ws.received == ["over tls", big]
    ws.close(1000, "bye")
    assert loop.run_until(lambda: ws.closed is not None, timeout=10)
    assert ws.closed == (1000, "bye")


def test_callback_client_verifies_the_certificate(tls_peer: int, loop: Reactor) -> None:
    # The default context trusts the system CAs, not the test CA.
    with pytest.raises(ssl.SSLCertVerificationError):
        loop.run_until_complete(connect(f"wss://localhost:{tls_peer}/", Client, reactor=loop),
                                timeout=10)


def test_callback_connect_uses_the_running_loop(peer: str, loop: Reactor) -> None:
    async def main() -> Client:
        ws = await connect(peer, Client)            # no reactor=: the running loop
        ws.send("no reactor argument")
        for _ in range(200):                        # bounded: 200 * 10 ms
            if ws.received:
                break
            await asyncio.sleep(0.01)
        return ws

    ws = loop.run_until_complete(main(), timeout=10)
    assert ws.received == ["no reactor argument"]
    with pytest.raises(RuntimeError, match="reactor="):
        connect(peer, Client)                       # no running loop, no reactor

"""The C-level receive contract (fastsock/_receive.pyx): which protocols the
TCP transport hands its receive buffer to in place, that a Python override of
``data_received`` still gets bytes, and that the loop's buffer is never
refilled under a parser that is still reading it."""
from __future__ import annotations

import time
from typing import Any

import pytest

from fastsock.websocket import WebSocketHandler, WebSocketOptions, protocol
from test_websocket_helpers import ServerThread, masked, raw_upgrade, read_frames, wait_for

_receive = pytest.importorskip("fastsock._receive", reason="fastsock/_receive.pyx not built")
_sockio = pytest.importorskip("fastsock.transports._sockio", reason="_sockio.pyx not built")
pytestmark = pytest.mark.skipif(protocol.CORE_IMPLEMENTATION != "cython",
                                reason="the in-place path is the compiled core's")

OPTIONS = WebSocketOptions(ping_interval=None)


class Echo(WebSocketHandler):
    def on_message(self, data: Any) -> None:
        self.send(data)


class LogsData(WebSocketHandler):
    """Overrides data_received in Python: it must keep being called, with bytes."""

    seen: list[type] = []

    def data_received(self, data: bytes) -> None:
        LogsData.seen.append(type(data))
        super().data_received(data)

    def on_message(self, data: Any) -> None:
        self.send(data)


class Plain:
    def data_received(self, data: bytes) -> None:
        pass


def test_receiver_for_takes_only_compiled_data_received() -> None:
    echo = Echo()
    assert _receive.receiver_for(echo) is echo
    assert _receive.receiver_for(LogsData()) is None
    assert _receive.receiver_for(Plain()) is None
    assert _receive.receiver_for(object()) is None


def _transport_of(srv: ServerThread) -> Any:
    handlers = srv.call(lambda: list(srv.state.handlers))
    assert len(handlers) == 1
    return handlers[0]._transport


def test_the_websocket_core_parses_the_loop_buffer_in_place() -> None:
    with ServerThread(Echo, loop="fastsock", options=OPTIONS) as srv:
        sock, rest = raw_upgrade(srv.port)
        with sock:
            # two whole frames and the start of a third in one read: the
            # first two go from the buffer, the rest is kept as bytes
            third = masked(1, "ünïcödé €".encode() * 40)
            sock.sendall(masked(1, b"one") + masked(2, b"\x00two") + third[:7])
            assert wait_for(lambda: _transport_of(srv)._fast.bytes_received > 0)
            sock.sendall(third[7:])
            frames = read_frames(sock, rest, until_close=False, count=3)
            transport = _transport_of(srv)
            # the transport hands its chunks to the handler itself, not via bytes
            assert srv.call(lambda: transport._fast.receiver is transport._protocol)
        assert frames == [(1, b"one"), (2, b"\x00two"), (1, "ünïcödé €".encode() * 40)]


def test_a_python_data_received_override_still_gets_bytes() -> None:
    LogsData.seen = []
    with ServerThread(LogsData, loop="fastsock", options=OPTIONS) as srv:
        sock, rest = raw_upgrade(srv.port)
        with sock:
            sock.sendall(masked(1, b"hello"))
            frames = read_frames(sock, rest, until_close=False, count=1)
        assert frames == [(1, b"hello")]
    assert LogsData.seen and set(LogsData.seen) == {bytes}


class Nested(WebSocketHandler):
    """On ``/b`` it stops reading at open; on ``/a`` its first message makes
    the transport of ``/b`` read by hand, while ``/a``'s parser is still in
    the middle of the loop's buffer."""

    by_path: dict[str, "Nested"] = {}
    got: dict[str, list[Any]] = {}

    def on_open(self) -> None:
        path = self.request.path
        Nested.by_path[path] = self
        Nested.got[path] = []
        if path == "/b":
            self._transport.pause_reading()

    def on_message(self, data: Any) -> None:
        path = self.request.path
        Nested.got[path].append(data)
        if path == "/a" and data == "first":
            Nested.by_path["/b"]._transport._read_ready()


def test_a_read_inside_a_callback_does_not_refill_the_buffer_being_parsed() -> None:
    Nested.by_path, Nested.got = {}, {}
    with ServerThread(Nested, loop="fastsock", options=OPTIONS) as srv:
        sock_a, _ = raw_upgrade(srv.port, "/a")
        sock_b, _ = raw_upgrade(srv.port, "/b")
        with sock_a, sock_b:
            assert wait_for(lambda: srv.call(lambda: len(Nested.by_path)) == 2)
            # B's bytes wait in the kernel (B is paused); they are longer than
            # A's whole chunk, so a read into the same buffer would overwrite
            # A's second frame before A's parser reaches it.
            sock_b.sendall(masked(1, b"from-b " * 40))
            time.sleep(0.1)
            sock_a.sendall(masked(1, b"first") + masked(1, b"second"))
            assert wait_for(lambda: srv.call(lambda: len(Nested.got["/a"])) == 2)
            got = srv.call(lambda: {k: list(v) for k, v in Nested.got.items()})
    assert got == {"/a": ["first", "second"], "/b": ["from-b " * 40]}


class Escapes(BaseException):
    """Not an Exception: the core does not turn it into 1011, it leaves chunk_received."""


class RaisesPastTheCore(WebSocketHandler):
    def on_message(self, data: Any) -> None:
        if data == "escape":
            raise Escapes()
        self.send(data)


def test_the_buffer_is_returned_when_a_callback_raises_past_the_core() -> None:
    """The transport fails that connection; the buffer is not left lent, so
    the next connection is parsed in place again."""
    with ServerThread(RaisesPastTheCore, loop="fastsock", options=OPTIONS) as srv:
        sock, rest = raw_upgrade(srv.port)
        with sock:
            sock.sendall(masked(1, b"escape"))
            assert read_frames(sock, rest, timeout=2) == []    # aborted: EOF, no close frame
        assert srv.call(_sockio.buffer_lent) is False
        sock, rest = raw_upgrade(srv.port)
        with sock:
            sock.sendall(masked(1, b"after"))
            assert read_frames(sock, rest, until_close=False, count=1) == [(1, b"after")]

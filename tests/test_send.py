"""The C-level send contract (fastsock/_send.pyx) and the compiled core's
allocation-free small frames: which transports take a pointer, that a reply
kept unframed until the turn's write (``_pending``) keeps its place among
everything else the connection sends, and that ``write_chunk`` queues what
the kernel does not take and fails the transport on a send error."""
from __future__ import annotations

import socket
import struct
from typing import Any

import pytest

from fastsock.pubsub.fanout import broadcast
from fastsock.websocket import WebSocketHandler, WebSocketOptions, protocol
from test_websocket_helpers import (FakeTransport, ServerThread, masked, raw_upgrade, read_frames,
                                    recv_head, status_of, upgrade_request, wait_for)

_send = pytest.importorskip("fastsock._send", reason="fastsock/_send.pyx not built")
pytestmark = pytest.mark.skipif(protocol.CORE_IMPLEMENTATION != "cython",
                                reason="the pointer write is the compiled core's")

OPTIONS = WebSocketOptions(ping_interval=None)


class Mixed(WebSocketHandler):
    """One message in, everything a handler can send out, in one callback."""

    seen_buffered: list[int] = []

    def on_message(self, data: Any) -> None:
        if data == "mix":
            self.send("first")                 # kept unframed (_pending)...
            Mixed.seen_buffered.append(self.buffered_amount)   # ...and counted
            self.send(b"\x01" * 5000)          # over COALESCE: header + payload
            self.ping(b"p")
            self.send("after ping")
            self.close(1000, "done")
        elif data == "fan":
            self.send("reply")                 # pending when broadcast queues
            broadcast(list(self.server.handlers), "to all")
        elif data == "two":
            self.send("one")
            self.send("two")
        else:
            self.send(data)


def _frames_for(message: bytes, count: int, handler: Any = Mixed) -> list[tuple[int, bytes]]:
    with ServerThread(handler, loop="fastsock", options=OPTIONS) as srv:
        sock, rest = raw_upgrade(srv.port)
        with sock:
            sock.sendall(message)
            return read_frames(sock, rest, until_close=False, count=count)


def test_writer_for_takes_only_a_chunk_writers_own_write() -> None:
    assert _send.writer_for(None) is None
    assert _send.writer_for(FakeTransport()) is None

    class Handler(WebSocketHandler):
        def on_open(self) -> None:
            self.send("open")

    with ServerThread(Handler, loop="fastsock", options=OPTIONS) as srv:
        sock, rest = raw_upgrade(srv.port)
        with sock:
            assert read_frames(sock, rest, until_close=False, count=1) == [(1, b"open")]
            transport = srv.call(lambda: next(iter(srv.state.handlers))._transport)
            writer = _send.writer_for(transport)
            assert isinstance(writer, _send.ChunkWriter) and writer is transport._fast
            assert srv.call(lambda: next(iter(srv.state.handlers))._writer) is writer

            # a write the application wrapped is not bypassed
            def wrapped(data: bytes) -> None:
                pass
            original = transport.write
            transport.write = wrapped
            assert _send.writer_for(transport) is None
            transport.write = original


def test_a_pending_reply_keeps_its_place_among_everything_else() -> None:
    Mixed.seen_buffered = []
    frames = _frames_for(masked(1, b"mix"), count=5)
    assert frames == [
        (1, b"first"),
        (2, b"\x01" * 5000),
        (9, b"p"),
        (1, b"after ping"),
        (8, struct.pack("!H", 1000) + b"done"),
    ]
    assert Mixed.seen_buffered == [2 + len("first")]


def test_two_replies_in_one_callback_both_go_in_order() -> None:
    assert _frames_for(masked(1, b"two"), count=2) == [(1, b"one"), (1, b"two")]


def test_a_broadcast_queued_after_a_pending_reply_goes_after_it() -> None:
    assert _frames_for(masked(1, b"fan"), count=2) == [(1, b"reply"), (1, b"to all")]


def test_replies_to_several_frames_of_one_read_keep_their_order() -> None:
    messages = [f"m{i}".encode() * (i + 1) for i in range(40)]
    frames = _frames_for(b"".join(masked(1, m) for m in messages), count=40)
    assert frames == [(1, m) for m in messages]


def test_non_ascii_text_and_binary_replies_go_out_unchanged() -> None:
    text = "ünïcödé €".encode() * 30
    frames = _frames_for(masked(1, text) + masked(2, b"\x00\xff" * 300), count=2)
    assert frames == [(1, text), (2, b"\x00\xff" * 300)]


class Flood(WebSocketHandler):
    """On "flood", sends COUNT numbered messages from a callback (not while
    input is handled, so each goes to write_chunk at once) through small
    socket buffers on both ends: the kernel stops taking them part way."""

    COUNT = 3000
    queued: list[int] = []

    def on_message(self, data: Any) -> None:
        if data == "flood":
            self._loop.call_soon(self._flood)

    def _flood(self) -> None:
        # a small send buffer too (no autotuning up to tcp_wmem's 4 MiB), so
        # the kernel is sure to stop taking the messages part way
        sock = self._transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        for i in range(Flood.COUNT):
            self.send(f"{i:06d}".encode() * 160)      # 960 B: a scratch frame
        Flood.queued.append(self._transport.get_write_buffer_size())


def _small_buffer_upgrade(port: int) -> tuple[socket.socket, bytes]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    sock.sendall(upgrade_request())
    head, rest = recv_head(sock)
    assert status_of(head) == 101, head
    return sock, rest


def test_what_the_kernel_does_not_take_is_queued_and_sent_in_order() -> None:
    Flood.queued = []
    with ServerThread(Flood, loop="fastsock", options=OPTIONS) as srv:
        sock, rest = _small_buffer_upgrade(srv.port)
        with sock:
            transport = srv.call(lambda: next(iter(srv.state.handlers))._transport)
            before = srv.call(lambda: transport.bytes_sent)
            sock.sendall(masked(1, b"flood"))
            assert wait_for(lambda: bool(Flood.queued))
            # the socket buffers filled: the rest waited in the transport's queue
            assert Flood.queued[0] > 0
            frames = read_frames(sock, rest, until_close=False, count=Flood.COUNT, timeout=20)
            assert wait_for(lambda: srv.call(lambda: transport.get_write_buffer_size()) == 0)
            total = srv.call(lambda: transport.bytes_sent) - before
    assert [f[1][:6] for f in frames] == [f"{i:06d}".encode() for i in range(Flood.COUNT)]
    assert all(f == (2, f[1][:6] * 160) for f in frames)
    assert total == Flood.COUNT * (4 + 960)     # every byte counted once


class SendsLater(WebSocketHandler):
    """Stops reading (so the reset is seen only by a write), then sends."""

    closed: list[int] = []

    def on_message(self, data: Any) -> None:
        if data == "arm":
            self._transport.pause_reading()
            self._loop.call_later(0.3, self._late)
        else:
            self.send(data)

    def _late(self) -> None:
        for _ in range(3):                 # the first send may still be taken
            if self.state.name != "OPEN":
                break
            self.send("late")

    def on_close(self, code: int, reason: str) -> None:
        SendsLater.closed.append(code)


def test_a_send_error_fails_the_connection_and_the_server_goes_on() -> None:
    SendsLater.closed = []
    with ServerThread(SendsLater, loop="fastsock", options=OPTIONS) as srv:
        sock, _ = raw_upgrade(srv.port)
        sock.sendall(masked(1, b"arm"))
        # close with a reset (no FIN, no close frame)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        assert wait_for(lambda: SendsLater.closed == [1006])
        sock, rest = raw_upgrade(srv.port)
        with sock:
            sock.sendall(masked(1, b"still here"))
            assert read_frames(sock, rest, until_close=False, count=1) == [(1, b"still here")]


class WritesEofByHand(WebSocketHandler):
    """Replies, then half-closes the transport itself: the turn's write raises."""

    def on_message(self, data: Any) -> None:
        self.send("kept")
        self._transport.write_eof()


def test_a_reply_whose_write_raises_stays_queued() -> None:
    """As a queued frame does, an unframed reply whose write raises stays in
    the queue (framed now) instead of vanishing; the error is logged."""
    with ServerThread(WritesEofByHand, loop="fastsock", options=OPTIONS) as srv:
        sock, _ = raw_upgrade(srv.port)
        with sock:
            sock.sendall(masked(1, b"go"))
            handler = srv.call(lambda: next(iter(srv.state.handlers)))
            assert wait_for(lambda: srv.call(lambda: handler._transport._eof))
            assert srv.call(lambda: handler._out) == [b"\x81\x04kept"]

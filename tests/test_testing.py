"""fastsock.testing: the fake clock, the fake transport, the in-memory pair,
and a user's WebSocket handler driven through them."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

from fastsock.exceptions import ConnectionClosedOK, FrameError, InvalidResponseError
from fastsock.frame import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT
from fastsock.testing import (
    ConnectionPair, FakeClock, FakeTransport, MemoryTransport, client_frame, decode_frames,
    websocket_pair,
)
from fastsock.pubsub.fanout import broadcast
from fastsock.websocket import Response, State, WebSocketHandler, WebSocketOptions

# ------------------------------------------------------------------ FakeClock


def test_clock_runs_nothing_until_told() -> None:
    clock = FakeClock()
    ran: list[str] = []
    clock.call_soon(ran.append, "soon")
    clock.call_later(1.0, ran.append, "later")
    assert ran == [] and clock.time() == 0.0
    assert clock.run_ready() == 1
    assert ran == ["soon"]
    assert clock.advance(0.999) == 0 and ran == ["soon"]
    assert clock.advance(0.001) == 1 and ran == ["soon", "later"]
    assert clock.time() == 1.0


def test_clock_orders_by_time_then_by_scheduling_order() -> None:
    clock = FakeClock(start=100.0)
    ran: list[tuple[str, float]] = []
    note = lambda name: ran.append((name, clock.time()))  # noqa: E731
    clock.call_at(102.0, note, "at-102")
    clock.call_later(1.0, note, "b-101")
    clock.call_later(1.0, note, "c-101")
    clock.call_soon(note, "a-100")
    clock.advance(5)
    assert ran == [("a-100", 100.0), ("b-101", 101.0), ("c-101", 101.0), ("at-102", 102.0)]
    assert clock.time() == 105.0


def test_clock_runs_callbacks_scheduled_inside_the_window() -> None:
    clock = FakeClock()
    ticks: list[float] = []

    def tick() -> None:
        ticks.append(clock.time())
        clock.call_later(1.0, tick)

    clock.call_later(1.0, tick)
    assert clock.advance(3.5) == 3
    assert ticks == [1.0, 2.0, 3.0]
    assert [t.when() for t in clock.pending()] == [4.0]
    assert clock.next_deadline() == 4.0


def test_clock_cancelled_timers_do_not_run() -> None:
    clock = FakeClock()
    ran: list[int] = []
    h1 = clock.call_later(1, ran.append, 1)
    clock.call_later(2, ran.append, 2)
    h1.cancel()
    assert h1.cancelled()
    assert [t.when() for t in clock.pending()] == [2.0]
    clock.advance(10)
    assert ran == [2]
    assert clock.pending() == [] and clock.next_deadline() is None


def test_clock_refuses_to_go_backwards_and_stops_runaway_loops() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)

    def again() -> None:
        clock.call_soon(again)

    clock.call_soon(again)
    with pytest.raises(RuntimeError, match="reschedul"):
        clock.run_ready()


def test_clock_callback_errors_propagate_and_keep_the_rest_queued() -> None:
    clock = FakeClock()
    ran: list[str] = []

    def boom() -> None:
        raise KeyError("boom")

    clock.call_later(1, boom)
    clock.call_later(2, ran.append, "after")
    with pytest.raises(KeyError):
        clock.advance(5)
    assert clock.time() == 1.0            # stopped where the error happened
    clock.advance(5)
    assert ran == ["after"]


def test_clock_run_all_jumps_between_timers_within_a_bound() -> None:
    clock = FakeClock()
    ran: list[float] = []
    clock.call_later(10, lambda: ran.append(clock.time()))
    clock.call_later(500, lambda: ran.append(clock.time()))
    clock.call_later(5000, lambda: ran.append(clock.time()))
    assert clock.run_all(limit=1000) == 2
    assert ran == [10.0, 500.0]
    assert clock.time() == 500.0


def test_clock_futures_call_back_through_the_clock() -> None:
    clock = FakeClock()
    fut = clock.create_future()
    seen: list[Any] = []
    fut.add_done_callback(lambda f: seen.append(f.result()))
    fut.set_result(42)
    assert seen == []                     # never inline
    clock.run_ready()
    assert seen == [42]


# ------------------------------------------------------------------ FakeTransport


class Recording(asyncio.Protocol):
    """An asyncio protocol that records its callbacks."""

    def __init__(self, keep_open_on_eof: bool = False) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.keep_open_on_eof = keep_open_on_eof
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.events.append(("made",))

    def data_received(self, data: bytes) -> None:
        self.events.append(("data", data))

    def eof_received(self) -> Optional[bool]:
        self.events.append(("eof",))
        return self.keep_open_on_eof

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.events.append(("lost", type(exc).__name__ if exc else None))

    def pause_writing(self) -> None:
        self.events.append(("pause_writing",))

    def resume_writing(self) -> None:
        self.events.append(("resume_writing",))

    def data(self) -> bytes:
        return b"".join(e[1] for e in self.events if e[0] == "data")


def test_fake_transport_records_calls_in_order() -> None:
    proto = Recording()
    t = FakeTransport(proto)
    t.write(b"ab")
    t.writelines([b"c", bytearray(b"d"), memoryview(b"e")])
    t.pause_reading()
    t.resume_reading()
    t.set_write_buffer_limits(high=100)
    t.write_eof()
    assert t.calls == [("write", b"ab"), ("writelines", [b"c", b"d", b"e"]), ("pause_reading",),
                       ("resume_reading",), ("set_write_buffer_limits", 100, None), ("write_eof",)]
    assert t.get_write_buffer_limits() == (25, 100)
    assert t.take() == b"abcde" and t.take() == b""
    with pytest.raises(RuntimeError, match="write_eof"):
        t.write(b"x")
    with pytest.raises(TypeError):
        t.write("text")  # type: ignore[arg-type]


def test_fake_transport_extra_info_and_protocol_swap() -> None:
    a, b = Recording(), Recording()
    t = FakeTransport(a, peername=("::1", 9, 0, 0), extra={"ssl_object": None, "x": 1})
    assert t.get_extra_info("peername") == ("::1", 9, 0, 0)
    assert t.get_extra_info("sockname") == ("127.0.0.1", 8765)
    assert t.get_extra_info("x") == 1 and t.get_extra_info("nope", "d") == "d"
    t.set_protocol(b)
    t.feed(b"to b")
    assert t.get_protocol() is b and b.events == [("data", b"to b")] and a.events == []


def test_fake_transport_close_delivers_connection_lost_once_via_the_clock() -> None:
    clock = FakeClock()
    proto = Recording()
    t = FakeTransport(proto, clock=clock)
    t.close()
    t.abort()
    t.write(b"late")
    assert t.is_closing() and t.closed and t.dropped_writes == 1 and t.take() == b""
    assert proto.events == []             # not from inside close()
    clock.run_ready()
    assert proto.events == [("lost", None)]
    assert t.calls == [("close",), ("abort",), ("write", b"late")]


def test_fake_transport_feed_respects_pause_reading_and_eof_semantics() -> None:
    proto = Recording()
    t = FakeTransport(proto)
    t.pause_reading()
    t.feed(b"1")
    t.feed_eof()
    assert proto.events == []
    t.resume_reading()
    assert proto.events == [("data", b"1"), ("eof",), ("lost", None)]   # eof -> False -> close
    assert t.closed
    with pytest.raises(RuntimeError, match="closed"):
        t.feed(b"2")

    half = Recording(keep_open_on_eof=True)
    t2 = FakeTransport(half)
    t2.feed_eof()
    assert half.events == [("eof",)] and not t2.closed


def test_fake_transport_buffer_size_drives_pause_and_resume_writing() -> None:
    proto = Recording()
    t = FakeTransport(proto)
    t.set_write_buffer_limits(high=1000, low=100)
    t.set_buffer_size(1000)
    assert proto.events == []             # at the watermark: not above it
    t.set_buffer_size(1001)
    t.set_buffer_size(5000)
    assert proto.events == [("pause_writing",)]
    t.set_buffer_size(101)
    assert proto.events == [("pause_writing",)]
    t.set_buffer_size(100)
    assert proto.events == [("pause_writing",), ("resume_writing",)]
    assert t.get_write_buffer_size() == 100
    with pytest.raises(ValueError):
        t.set_write_buffer_limits(high=1, low=2)
    with pytest.raises(ValueError):
        t.set_buffer_size(-1)


class Buffered(asyncio.BufferedProtocol):
    def __init__(self, size: int) -> None:
        self.buf = bytearray(size)
        self.got = bytearray()
        self.rounds = 0

    def connection_made(self, transport: Any) -> None:
        pass

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        self.rounds += 1
        self.got += self.buf[:nbytes]

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        pass


def test_fake_transport_feeds_buffered_protocols_through_get_buffer() -> None:
    proto = Buffered(4)
    t = FakeTransport(proto)
    t.feed(b"0123456789")
    assert proto.got == b"0123456789" and proto.rounds == 3


# ------------------------------------------------------------------ ConnectionPair


class Echo(Recording):
    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.transport.write(data.upper())


def test_pair_moves_bytes_both_ways_on_the_next_turn() -> None:
    server, client = Echo(), Recording()
    pair = ConnectionPair(server, client)
    assert server.events == [("made",)] and client.events == [("made",)]
    assert isinstance(server.transport, MemoryTransport)
    assert server.transport.get_extra_info("peername") == client.transport.get_extra_info("sockname")
    client.transport.write(b"hello")
    client.transport.writelines([b" ", b"world"])
    assert client.transport.get_write_buffer_size() == 11 and server.data() == b""
    pair.run()
    assert server.data() == b"hello world" and client.data() == b"HELLO WORLD"
    assert client.transport.get_write_buffer_size() == 0
    assert client.transport.bytes_sent == 11


def test_pair_chunk_size_trickles_bytes() -> None:
    server, client = Recording(), Recording()
    pair = ConnectionPair(server, client, chunk_size=1)
    client.transport.write(b"abc")
    pair.run()
    assert [e for e in server.events if e[0] == "data"] == [("data", b"a"), ("data", b"b"),
                                                            ("data", b"c")]


def test_pair_delay_is_one_way_latency() -> None:
    server, client = Echo(), Recording()
    pair = ConnectionPair(server, client, delay=0.05)
    client.transport.write(b"x")
    pair.run()
    assert server.data() == b""
    pair.advance(0.05)
    assert server.data() == b"x" and client.data() == b""
    pair.advance(0.05)
    assert client.data() == b"X"


def test_pair_close_sends_fin_and_both_ends_lose_the_connection() -> None:
    server, client = Recording(), Recording()
    pair = ConnectionPair(server, client)
    client.transport.write(b"last words")
    client.transport.close()
    client.transport.write(b"dropped")
    assert client.transport.dropped_writes == 1
    pair.run()
    # Data first, then EOF; the server's eof_received returns False, so it closes too.
    assert server.events == [("made",), ("data", b"last words"), ("eof",), ("lost", None)]
    assert client.events == [("made",), ("lost", None)]
    assert pair.closed


def test_pair_half_close_keeps_the_other_direction_open() -> None:
    server, client = Recording(keep_open_on_eof=True), Recording(keep_open_on_eof=True)
    pair = ConnectionPair(server, client)
    client.transport.write_eof()
    with pytest.raises(RuntimeError, match="write_eof"):
        client.transport.write(b"x")
    pair.run()
    assert server.events[-1] == ("eof",)
    server.transport.write(b"reply after your EOF")
    server.transport.close()
    pair.run()
    assert client.data() == b"reply after your EOF"
    assert client.events[-1] == ("eof",)
    assert server.events[-1] == ("lost", None)
    client.transport.close()
    pair.run()
    assert client.events[-1] == ("lost", None) and pair.closed


def test_pair_abort_drops_queued_data_and_resets_the_peer() -> None:
    server, client = Recording(), Recording()
    pair = ConnectionPair(server, client)
    client.transport.write(b"never delivered")
    client.transport.abort()
    pair.run()
    assert server.events == [("made",), ("lost", "ConnectionResetError")]
    assert client.events == [("made",), ("lost", None)]


def test_pair_writing_to_a_closed_peer_is_reset() -> None:
    server, client = Recording(), Recording(keep_open_on_eof=True)
    pair = ConnectionPair(server, client)
    server.transport.close()
    pair.run()
    assert client.events[-1] == ("eof",)
    client.transport.write(b"too late")
    pair.run()
    assert client.events[-1] == ("lost", "ConnectionResetError")


def test_pair_back_pressure_from_a_peer_that_stops_reading() -> None:
    server, client = Recording(), Recording()
    pair = ConnectionPair(server, client)
    server.transport.set_write_buffer_limits(high=1000, low=200)
    client.transport.pause_reading()
    for _ in range(11):
        server.transport.write(b"x" * 100)
    pair.run()
    assert server.transport.get_write_buffer_size() == 1100
    assert server.events[-1] == ("pause_writing",) and client.data() == b""
    client.transport.resume_reading()
    pair.run()
    assert len(client.data()) == 1100
    assert server.events[-2:] == [("pause_writing",), ("resume_writing",)]


def test_pair_feeds_buffered_protocols() -> None:
    server, client = Buffered(3), Recording()
    pair = ConnectionPair(server, client)
    client.transport.write(b"abcdefgh")
    pair.run()
    assert server.got == b"abcdefgh" and server.rounds == 3


def test_pair_runs_on_a_real_asyncio_loop() -> None:
    async def turns_until(done: Any) -> None:
        for _ in range(100):                          # a few loop turns are enough
            if done():
                return
            await asyncio.sleep(0)
        raise AssertionError("the in-memory pair made no progress on asyncio")

    async def main() -> tuple[Echo, Recording]:
        server, client = Echo(), Recording()
        ConnectionPair(server, client, clock=asyncio.get_running_loop())
        client.transport.write(b"over asyncio")
        await turns_until(lambda: client.data() == b"OVER ASYNCIO")
        client.transport.close()
        await turns_until(lambda: client.events[-1][0] == server.events[-1][0] == "lost")
        return server, client

    server, client = asyncio.run(main())
    assert server.events == [("made",), ("data", b"over asyncio"), ("eof",), ("lost", None)]
    assert client.events == [("made",), ("data", b"OVER ASYNCIO"), ("lost", None)]
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(RuntimeError, match="FakeClock"):
            ConnectionPair(Recording(), Recording(), clock=loop).run()
    finally:
        loop.close()


# ------------------------------------------------------------------ WebSocket


class Room(WebSocketHandler):
    """A user's handler under test: greets, echoes with a prefix, answers
    "bye" by closing, and refuses binary with 1003."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[Any, ...]] = []

    def on_open(self) -> None:
        self.events.append(("open", self.path))
        self.send(f"welcome to {self.path}")

    def on_message(self, data: Any) -> None:
        self.events.append(("message", data))
        if data == "bye":
            self.close(1000, "see you")
        elif isinstance(data, bytes):
            self.send(data[::-1])
        else:
            self.send(f"echo: {data}")

    def on_ping(self, payload: bytes) -> None:
        self.events.append(("ping", payload))

    def on_close(self, code: int, reason: str) -> None:
        self.events.append(("close", code, reason))


class Client(WebSocketHandler):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[Any, ...]] = []

    def on_open(self) -> None:
        self.events.append(("open",))

    def on_message(self, data: Any) -> None:
        self.events.append(("message", data))

    def on_ping(self, payload: bytes) -> None:
        self.events.append(("ping", payload))

    def on_pong(self, payload: bytes) -> None:
        self.events.append(("pong", payload))

    def on_close(self, code: int, reason: str) -> None:
        self.events.append(("close", code, reason))


def test_websocket_pair_opens_through_the_real_handshake() -> None:
    ws = websocket_pair(Room, Client, path="/lobby", headers=[("X-Token", "t1")])
    assert ws.server.state is State.OPEN and ws.client.state is State.OPEN
    assert ws.server.events == [("open", "/lobby")]
    assert ws.server.request.headers.get("X-Token") == "t1"
    assert ws.server.remote_address == ws.client.transport.get_extra_info("sockname")
    # What on_open sent arrived in the same turn as the 101 response.
    assert ws.client.events == [("open",), ("message", "welcome to /lobby")]
    assert ws.state.handlers == {ws.server}


@pytest.mark.parametrize("chunk_size", [None, 1, 7])
def test_websocket_text_and_binary_keep_their_type(chunk_size: Optional[int]) -> None:
    ws = websocket_pair(Room, Client, chunk_size=chunk_size)
    ws.client.send("h\u00e9llo \U0001f680")
    ws.client.send(b"\x00\x01\xff")
    big = bytes(range(256)) * 300                    # 76800 bytes: the 64-bit length form
    ws.client.send(big)
    ws.run()
    assert ws.server.events[1:] == [("message", "h\u00e9llo \U0001f680"),
                                    ("message", b"\x00\x01\xff"), ("message", big)]
    assert ws.client.events[2:] == [("message", "echo: h\u00e9llo \U0001f680"),
                                    ("message", b"\xff\x01\x00"), ("message", big[::-1])]


def test_websocket_ping_pong_and_latency_with_network_delay() -> None:
    ws = websocket_pair(Room, Client, delay=0.01)
    ws.advance(0.01)                                  # the welcome arrives
    ws.client.ping(b"are you there")
    ws.advance(0.01)
    assert ws.server.events[-1] == ("ping", b"are you there")
    ws.advance(0.01)
    assert ws.client.events[-1] == ("pong", b"are you there")
    assert ws.client.latency == pytest.approx(0.02)


def test_websocket_keepalive_runs_on_the_fake_clock() -> None:
    opts = WebSocketOptions(ping_interval=20.0, ping_timeout=10.0)
    ws = websocket_pair(Room, Client, options=opts,
                        client_options=WebSocketOptions(ping_interval=None))
    assert [t.when() for t in ws.clock.pending() if "keepalive" in repr(t)] == [20.0]
    assert ws.server.latency is None
    ws.advance(20.0)                                  # the server pings, the client answers
    assert ws.client.events[-1][0] == "ping" and len(ws.client.events[-1][1]) == 4
    assert ws.server.latency == 0.0
    # The client stops reading: the server's next ping (t=40) goes unanswered
    # and the keep-alive fails the connection with 1011 ping_timeout later (t=50).
    ws.client.transport.pause_reading()
    ws.advance(29.9)
    assert ws.server.state is State.OPEN
    ws.advance(0.2)
    assert ws.server.state is State.CLOSING
    # The client never reads the close frame: the close timeout drops TCP.
    ws.advance(opts.close_timeout)
    assert ws.server.events[-1] == ("close", 1011, "keepalive ping timeout")
    assert ws.client.events[-1] == ("close", 1006, "")


def test_websocket_close_handshake_started_by_the_client() -> None:
    ws = websocket_pair(Room, Client)
    ws.client.close(1001, "going away")
    with pytest.raises(ConnectionClosedOK):
        ws.client.send("after close")
    ws.run()
    assert ws.server.events[-1] == ("close", 1001, "going away")
    assert ws.client.events[-1] == ("close", 1001, "going away")
    assert ws.closed and ws.state.handlers == set()
    assert ws.clock.pending() == []                  # no timer left behind


def test_websocket_close_handshake_started_by_the_handler() -> None:
    ws = websocket_pair(Room, Client)
    ws.client.send("bye")
    ws.run()
    assert ws.client.events[-1] == ("close", 1000, "see you")
    assert ws.server.events[-1] == ("close", 1000, "see you")
    assert ws.closed


def test_websocket_peer_vanishing_is_1006() -> None:
    ws = websocket_pair(Room, Client)
    ws.client.abort()
    ws.run()
    assert ws.server.events[-1] == ("close", 1006, "")
    assert ws.client.events[-1] == ("close", 1006, "")


def test_websocket_slow_peer_policy_with_real_back_pressure() -> None:
    opts = WebSocketOptions(write_limit=4096, slow_peer="drop", ping_interval=None)
    ws = websocket_pair(Room, Client, options=opts)
    ws.run()
    ws.client.transport.pause_reading()
    # Ten frames are queued in one turn and written together: over write_limit.
    assert sum(broadcast([ws.server], f"{i}" * 1000) for i in range(10)) == 10
    ws.run()
    assert ws.server.writing_paused and ws.server.buffered_amount > 4096
    # While the client does not read, broadcasts skip it ("drop").
    assert broadcast([ws.server], "dropped") == 0
    assert ws.server.messages_dropped == 1
    ws.client.transport.resume_reading()
    ws.run()
    assert not ws.server.writing_paused
    assert ws.client.events[2:] == [("message", f"{i}" * 1000) for i in range(10)]


def test_websocket_pair_reports_refused_handshakes() -> None:
    with pytest.raises(InvalidResponseError) as info:
        websocket_pair({"/chat": Room}, path="/elsewhere")
    assert info.value.status == 404

    def deny(request: Any) -> Optional[Response]:
        return Response(403, [], "no token\n") if "X-Token" not in request.headers else None

    with pytest.raises(InvalidResponseError) as info:
        websocket_pair(Room, process_request=deny)
    assert info.value.status == 403 and "no token" in str(info.value)
    assert websocket_pair(Room, process_request=deny, headers=[("X-Token", "1")]).server.open


def test_websocket_subprotocol_negotiation() -> None:
    ws = websocket_pair(Room, Client, subprotocols=["v2", "v1"], client_subprotocols=["v1", "v2"])
    assert ws.server.subprotocol == "v2" and ws.client.subprotocol == "v2"   # the server's choice
    assert websocket_pair(Room, Client, subprotocols=["v2"]).client.subprotocol is None


# ------------------------------------------------------------------ frame helpers


def test_handler_on_a_fake_transport_with_frame_helpers() -> None:
    """The lower-level way: attach a handler to a FakeTransport and a FakeClock,
    feed it client frames, decode what it wrote."""
    clock = FakeClock()
    room = Room()
    t = FakeTransport(room, clock=clock)
    room.attach(t, clock, options=WebSocketOptions(ping_interval=None))
    assert [(f.opcode, f.payload) for f in decode_frames(t.take())] == [(OP_TEXT, b"welcome to None")]
    t.feed(client_frame(OP_TEXT, "hi") + client_frame(OP_PING, b"p") + client_frame(OP_BINARY, b"ab"))
    assert [(f.opcode, f.payload) for f in decode_frames(t.take())] == [
        (OP_TEXT, b"echo: hi"), (OP_PONG, b"p"), (OP_BINARY, b"ba")]
    t.feed(client_frame(OP_TEXT, "bye"))
    frames = decode_frames(t.take())
    assert [(f.opcode, f.payload) for f in frames] == [(OP_CLOSE, b"\x03\xe8see you")]
    t.feed(client_frame(OP_CLOSE, b"\x03\xe8"))        # the client's answer: 1000, no reason
    # The server lingers: it half-closes and waits for the client's end of stream
    # before closing, so a late client frame cannot make the kernel reset the tail.
    assert t.eof_written and not t.closed and room.events[-1] == ("message", "bye")
    t.feed_eof()
    assert t.closed                                    # connection_lost comes soon
    clock.run_ready()
    assert room.events[-1] == ("close", 1000, "")


def test_decode_frames_checks_the_masking_side_and_cut_off_frames() -> None:
    frame = client_frame(OP_TEXT, "x" * 200)
    assert decode_frames(frame, masked=True)[0].payload == b"x" * 200
    with pytest.raises(FrameError):
        decode_frames(frame)                          # a server never sends masked frames
    with pytest.raises(FrameError, match="cut-off"):
        decode_frames(frame[:-1], masked=True)


def test_the_documented_example_runs() -> None:
    """examples/testing_handler.py is what docs/testing.md points users at."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, str(root / "examples" / "testing_handler.py")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
